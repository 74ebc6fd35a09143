from django.conf import settings
from django.db import connection
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt

from .api import error_response, internal_error_response, json_endpoint
from .exceptions import InvalidRequest, NotFound, NotReady

API_ROOTS = ("/api", "/healthz", "/readyz")


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


def is_api_path(path: str) -> bool:
    """The agent API and the health endpoints answer JSON only, whatever goes wrong."""
    return any(path == root or path.startswith(root + "/") for root in API_ROOTS)


@csrf_exempt
def api_not_found(request, *args, **kwargs):
    """The catch-all for unknown paths under the API roots (controlplane/urls.py), so they are a
    JSON 404 with DEBUG on or off, for any HTTP method, with or without a trailing slash."""
    return error_response(NotFound("No such endpoint; see /api/v1/openapi.json."), request)


def not_found(request, exception=None):
    """handler404 (DEBUG off): JSON for the API roots; Django's page elsewhere."""
    if is_api_path(request.path):
        return api_not_found(request)
    return defaults.page_not_found(request, exception)


def bad_request(request, exception=None):
    """handler400, e.g. a SuspiciousOperation raised by middleware."""
    if is_api_path(request.path):
        return error_response(InvalidRequest("The request was refused as malformed.", field="request"), request)
    return defaults.bad_request(request, exception)


def server_error(request):
    """handler500: an exception that escaped the view (middleware, URL resolution)."""
    if is_api_path(request.path):
        return internal_error_response(request)
    return defaults.server_error(request)
