"""A URLconf with a plain (not json_endpoint) view that raises, to reach handler500."""

from django.urls import include, path


def boom(request):
    raise RuntimeError("boom")


urlpatterns = [
    path("api/v1/boom", boom),
    path("elsewhere/boom", boom),
    path("", include("controlplane.urls")),
]

handler400 = "apps.core.views.bad_request"
handler404 = "apps.core.views.not_found"
handler500 = "apps.core.views.server_error"
