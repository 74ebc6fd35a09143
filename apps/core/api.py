"""The JSON endpoint helper: the one place where errors become HTTP answers.

`error_response` is the only renderer of an API error: `@json_endpoint` uses it for every
`ApplicationError` (400 to 503) and for unexpected exceptions (500), and the 400/403/404/500
handlers and the `/api/...` catch-all (`apps.core.views`) use it too, so every error on an API
path is `{"error": {"code", "message", ...}}` with `Content-Type: application/json`.

`@json_endpoint("GET", "POST")` wraps a view so that it
- answers only the listed HTTP methods (405 with an `Allow` header otherwise),
- refuses control characters in the query string and the URL's parameters (400, naming them),
- refuses bodies over `API_MAX_BODY_BYTES` (413) before reading them,
- turns `ApplicationError` into `{"error": {...}}` with its status, and Django's
  `SuspiciousOperation` (too many query fields, a bad Host) into a 400,
- turns anything unexpected into a 500 JSON answer with the request id (never an HTML page).

`parse_json_body` accepts only what every later step (the canonical hash, PostgreSQL `jsonb`,
the portal) can take: a UTF-8 JSON object with no duplicate key, no non-finite number
(`NaN`, `1e400`), no lone UTF-16 surrogate, no NUL character and at most `MAX_JSON_DEPTH`
levels of nesting; each refusal names the offending `field` (`params.fields.TITLE`).

Views return a dict/list (200), or `(payload, status)` / `(payload, status, headers)`.
"""

import functools
import inspect
import json
import logging
import math
import re

from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt

from .exceptions import (
    ApplicationError,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    TooLarge,
    UnsupportedMediaType,
)

logger = logging.getLogger(__name__)

MAX_JSON_DEPTH = 64
MAX_MESSAGE_CHARS = 500
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def error_response(exc: ApplicationError, request: HttpRequest | None = None) -> JsonResponse:
    """The one renderer of an API error."""
    body = {"error": exc.as_dict()}
    message = body["error"]["message"]
    if len(message) > MAX_MESSAGE_CHARS:  # validators quote the offending value, which may be huge
        body["error"]["message"] = message[:MAX_MESSAGE_CHARS] + "…"
    request_id = getattr(request, "request_id", None)
    if request_id:
        body["error"].setdefault("request_id", request_id)
    # ensure_ascii: a message may quote client input, which is never trusted to be encodable.
    response = JsonResponse(body, status=exc.status)
    retry_after = getattr(exc, "retry_after", None)
    if retry_after:
        response["Retry-After"] = str(retry_after)
    allowed = exc.extra.get("allowed") if isinstance(exc, MethodNotAllowed) else None
    if allowed:
        response["Allow"] = ", ".join(allowed)
    return response


def internal_error_response(request: HttpRequest | None = None) -> JsonResponse:
    return error_response(InternalError(), request)


# --------------------------------------------------------------------------- request bodies


class _Object(dict):
    """A decoded JSON object; `duplicate` names a key that appeared twice (refused later, with
    the path to it)."""

    duplicate: str | None = None


def _object_pairs(pairs):
    obj = _Object()
    for key, value in pairs:
        if key in obj and obj.duplicate is None:
            obj.duplicate = key
        obj[key] = value
    return obj


def _printable(key: str) -> str:
    return key.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace").replace("\x00", "\\x00")


def _join(path: str, key) -> str:
    key = _printable(key) if isinstance(key, str) else str(key)
    return f"{path}.{key}" if path else key


def _check_string(value: str, field: str, what: str) -> None:
    if _SURROGATE.search(value):
        raise InvalidRequest(f"{what} contains a lone UTF-16 surrogate; send valid Unicode.", field=field)
    if "\x00" in value:
        raise InvalidRequest(f"{what} contains a NUL character (\\u0000), which is never accepted.", field=field)


def check_json_value(value, *, field: str = "") -> None:
    """Refuse what JSON allows but the control plane cannot store, hash or send faithfully.
    Iterative, so no input can exhaust the stack."""
    stack = [(value, field or "", 1)]
    while stack:
        node, path, depth = stack.pop()
        where = path or "body"
        if isinstance(node, dict | list) and depth > MAX_JSON_DEPTH:
            raise InvalidRequest(f"JSON nested deeper than {MAX_JSON_DEPTH} levels.", field=where)
        if isinstance(node, dict):
            duplicate = getattr(node, "duplicate", None)
            if duplicate is not None:
                raise InvalidRequest(f"The key {_printable(duplicate)!r} appears twice in one object.",
                                     field=_join(path, duplicate))
            for key, child in node.items():
                child_path = _join(path, key)
                _check_string(key, child_path, "A key")
                stack.append((child, child_path, depth + 1))
        elif isinstance(node, list):
            stack.extend((child, _join(path, index), depth + 1) for index, child in enumerate(node))
        elif isinstance(node, str):
            _check_string(node, where, "A string")
        elif isinstance(node, float) and not math.isfinite(node):
            raise InvalidRequest("Numbers must be finite (no NaN, Infinity or values beyond 1e308).", field=where)


def loads_strict(raw: bytes | str, *, field: str = "body"):
    """Decode JSON text under the rules of `check_json_value`; InvalidRequest otherwise."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
        data = json.loads(text, object_pairs_hook=_object_pairs, parse_constant=float)
    except RecursionError:
        raise InvalidRequest(f"JSON nested deeper than {MAX_JSON_DEPTH} levels.", field=field) from None
    except UnicodeDecodeError:
        raise InvalidRequest("The body is not UTF-8.", field=field) from None
    except ValueError as exc:  # JSONDecodeError, and integers over Python's digit limit
        raise InvalidRequest(f"The body is not valid JSON: {exc}", field=field) from None
    check_json_value(data, field="" if field == "body" else field)
    return data


def parse_json_body(request: HttpRequest) -> dict:
    """The request body as a JSON object, or InvalidRequest/UnsupportedMediaType/TooLarge."""
    content_type = (request.content_type or "").lower()
    if content_type != "application/json":
        raise UnsupportedMediaType(field="Content-Type")
    raw = read_body(request)
    if not raw.strip():
        raise InvalidRequest("The body is empty; send a JSON object.", field="body")
    data = loads_strict(raw)
    if not isinstance(data, dict):
        raise InvalidRequest("The body must be a JSON object.", field="body")
    return dict(data)


def read_body(request: HttpRequest, *, limit: int | None = None) -> bytes:
    """The raw body, refused with 413 when over `limit` (API_MAX_BODY_BYTES by default): by its
    Content-Length before reading, and by what arrives (never more than limit + 1 bytes read)."""
    limit = settings.API_MAX_BODY_BYTES if limit is None else limit
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise InvalidRequest("Content-Length is not a number.", field="Content-Length") from None
    if length > limit:
        raise TooLarge(f"The body is {length} bytes; the limit is {limit}.", limit=limit)
    body = request.read(limit + 1)
    if len(body) > limit:
        raise TooLarge(f"The body is over {limit} bytes.", limit=limit)
    return body


# --------------------------------------------------------------------------- the decorator


def _check_url_input(request: HttpRequest, kwargs: dict) -> None:
    """No API parameter (query string or URL part) legitimately carries a control character, and
    PostgreSQL refuses NUL in any text: refuse them before a view sees them."""
    for key, values in request.GET.lists():
        if _CONTROL.search(key):
            raise InvalidRequest("A query parameter name contains a control character.", field=_printable(key))
        if any(_CONTROL.search(value) for value in values):
            raise InvalidRequest(f"The query parameter {key} contains a control character.", field=key)
    for key, value in kwargs.items():
        if isinstance(value, str) and (_CONTROL.search(value) or _SURROGATE.search(value)):
            raise InvalidRequest(f"The {key} in the URL contains a control character.", field=key)


def _render(result) -> HttpResponseBase:
    if isinstance(result, HttpResponseBase):  # a JsonResponse, or a file (exports)
        return result
    status, headers = 200, {}
    if isinstance(result, tuple):
        result, status, *rest = result
        headers = rest[0] if rest else {}
    response = JsonResponse(result, status=status, safe=False, json_dumps_params={"ensure_ascii": False})
    for key, value in headers.items():
        response[key] = value
    return response


def _refused(exc: Exception, request: HttpRequest, view) -> JsonResponse:
    if isinstance(exc, ApplicationError):
        return error_response(exc, request)
    if isinstance(exc, SuspiciousOperation):  # e.g. TooManyFieldsSent, DisallowedHost
        return error_response(InvalidRequest(f"The request was refused: {exc}", field="request"), request)
    logger.error("Unhandled error in %s", view.__qualname__, exc_info=exc)
    return internal_error_response(request)


def json_endpoint(*methods: str):
    """Also wraps an `async def` view (the long polls): the same checks and error answers, awaited.
    An async view's `blocking` twin (`apps.core.aio.long_poll`) is wrapped the same way."""
    allowed = sorted({m.upper() for m in methods})

    def _check(request: HttpRequest, kwargs: dict) -> None:
        if request.method not in allowed:
            raise MethodNotAllowed(f"Use {', '.join(allowed)}.", allowed=allowed)
        _check_url_input(request, kwargs)

    def decorator(view):
        if inspect.iscoroutinefunction(view):
            @functools.wraps(view)
            async def async_wrapper(request: HttpRequest, *args, **kwargs):
                try:
                    _check(request, kwargs)
                    result = await view(request, *args, **kwargs)
                except Exception as exc:  # noqa: BLE001 - rendered by _refused, unexpected ones logged
                    return _refused(exc, request, view)
                return _render(result)

            wrapped = csrf_exempt(async_wrapper)
            if getattr(view, "blocking", None) is not None:
                wrapped.blocking = decorator(view.blocking)
            return wrapped

        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs):
            try:
                _check(request, kwargs)
                result = view(request, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - rendered by _refused, unexpected ones logged
                return _refused(exc, request, view)
            return _render(result)

        # Bearer-token API: no cookies are read, so CSRF does not apply; the session
        # middleware never authenticates these views (see apps.agents.auth).
        return csrf_exempt(wrapper)

    return decorator
