"""The JSON endpoint helper: the one place where errors become HTTP answers.

`@json_endpoint("GET", "POST")` wraps a view so that it
- answers only the listed HTTP methods (405 otherwise),
- refuses bodies over `API_MAX_BODY_BYTES` (413) before reading them,
- turns `ApplicationError` into `{"error": {...}}` with its status,
- turns anything unexpected into a 500 JSON answer with the request id (never an HTML page).

Views return a dict/list (200), or `(payload, status)` / `(payload, status, headers)`.
"""

import functools
import json
import logging

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from .exceptions import ApplicationError, InvalidRequest, MethodNotAllowed, TooLarge, UnsupportedMediaType

logger = logging.getLogger(__name__)


def error_response(exc: ApplicationError, request: HttpRequest | None = None) -> JsonResponse:
    body = {"error": exc.as_dict()}
    request_id = getattr(request, "request_id", None)
    if request_id:
        body["error"].setdefault("request_id", request_id)
    response = JsonResponse(body, status=exc.status)
    retry_after = getattr(exc, "retry_after", None)
    if retry_after:
        response["Retry-After"] = str(retry_after)
    return response


def parse_json_body(request: HttpRequest) -> dict:
    """The request body as a JSON object, or InvalidRequest/UnsupportedMediaType/TooLarge."""
    content_type = (request.content_type or "").lower()
    if content_type != "application/json":
        raise UnsupportedMediaType(field="Content-Type")
    raw = read_body(request)
    if not raw:
        raise InvalidRequest("The body is empty; send a JSON object.", field="body")
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise InvalidRequest(f"The body is not valid JSON: {exc}", field="body") from None
    if not isinstance(data, dict):
        raise InvalidRequest("The body must be a JSON object.", field="body")
    return data


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def read_body(request: HttpRequest) -> bytes:
    limit = settings.API_MAX_BODY_BYTES
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise InvalidRequest("Content-Length is not a number.", field="Content-Length") from None
    if length > limit:
        raise TooLarge(f"The body is {length} bytes; the limit is {limit}.", limit=limit)
    body = request.body
    if len(body) > limit:
        raise TooLarge(f"The body is {len(body)} bytes; the limit is {limit}.", limit=limit)
    return body


def json_endpoint(*methods: str):
    allowed = {m.upper() for m in methods}

    def decorator(view):
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs):
            try:
                if request.method not in allowed:
                    raise MethodNotAllowed(f"Use {', '.join(sorted(allowed))}.", allowed=sorted(allowed))
                result = view(request, *args, **kwargs)
            except ApplicationError as exc:
                return error_response(exc, request)
            except Exception:
                logger.exception("Unhandled error in %s", view.__qualname__)
                return JsonResponse(
                    {"error": {"code": "internal_error", "message": "Internal error; it has been logged.",
                               "request_id": getattr(request, "request_id", None)}},
                    status=500,
                )
            if isinstance(result, JsonResponse):
                return result
            status, headers = 200, {}
            if isinstance(result, tuple):
                result, status, *rest = result
                headers = rest[0] if rest else {}
            response = JsonResponse(result, status=status, safe=False, json_dumps_params={"ensure_ascii": False})
            for key, value in headers.items():
                response[key] = value
            return response

        # Bearer-token API: no cookies are read, so CSRF does not apply; the session
        # middleware never authenticates these views (see apps.agents.auth).
        return csrf_exempt(wrapper)

    return decorator
