from django.conf import settings
from django.db import connection

from .api import json_endpoint
from .exceptions import ApplicationError


class NotReady(ApplicationError):
    code = "not_ready"
    status = 503
    default_message = "A dependency is not reachable."


@json_endpoint("GET")
def healthz(request):
    return {"status": "ok"}


@json_endpoint("GET")
def readyz(request):
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        from controlplane.celery import app

        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        checks["broker"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["broker"] = f"error: {type(exc).__name__}"
    if any(value != "ok" for value in checks.values()):
        raise NotReady(checks=checks)
    return {"status": "ready", "checks": checks, "sandbox": settings.SANDBOX_ENABLED}


def not_found(request, exception=None):
    """JSON 404 for the API and the health endpoints; Django's page elsewhere."""
    from django.views.defaults import page_not_found

    from .api import error_response
    from .exceptions import NotFound

    if request.path.startswith(("/api/", "/healthz", "/readyz")):
        return error_response(NotFound("No such endpoint."), request)
    return page_not_found(request, exception)


def server_error(request):
    from django.http import JsonResponse
    from django.views.defaults import server_error as html_server_error

    if request.path.startswith("/api/"):
        return JsonResponse({"error": {"code": "internal_error", "message": "Internal error; it has been logged.",
                                       "request_id": getattr(request, "request_id", None)}}, status=500)
    return html_server_error(request)
