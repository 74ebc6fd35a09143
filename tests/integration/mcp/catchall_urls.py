"""The plane's URLs without the event feed, plus a catch-all JSON 404 under /api/: a plane whose
/api/v1/events answers 404 offers no read_events tool."""

from django.urls import re_path

from apps.core.api import json_endpoint
from apps.core.exceptions import NotFound
from controlplane.urls import urlpatterns as plane_urlpatterns


@json_endpoint("GET", "POST")
def api_not_found(request):
    raise NotFound("No such endpoint.")


def _is_feed(pattern) -> bool:
    return "events" in str(getattr(pattern, "urlconf_name", "")) or "hooks" in str(pattern.pattern)


urlpatterns = [*[p for p in plane_urlpatterns if not _is_feed(p)],
               re_path(r"^(?:api|healthz|readyz)(?:/[\s\S]*)?\Z", api_not_found)]
