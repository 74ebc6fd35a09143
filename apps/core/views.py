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
