"""The plane's URLs plus a catch-all JSON 404 under /api/ (as main has): not an event feed."""

from django.urls import re_path

from apps.core.api import json_endpoint
from apps.core.exceptions import NotFound
from controlplane.urls import urlpatterns as plane_urlpatterns


@json_endpoint("GET", "POST")
def api_not_found(request):
    raise NotFound("No such endpoint.")


urlpatterns = [*plane_urlpatterns, re_path(r"^(?:api|healthz|readyz)(?:/[\s\S]*)?\Z", api_not_found)]
