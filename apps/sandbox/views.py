"""HTTP adapters for the sandbox portal: parse the request the way a Bitrix24 portal does, call
one service, render JSON. Bitrix24 clients are not browsers, hence `csrf_exempt`; nothing here
is reachable with a browser session's authority."""

import json
import logging

from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from .dispatch import V2, V3
from .params import ParamsError, php_nest, php_parse_query
from .services import sandbox_oauth_token, sandbox_rest_call
from .xmlrender import render_xml

logger = logging.getLogger(__name__)

MAX_BODY = 4 * 1024 * 1024


class BadRequest(Exception):
    pass


def _json(body, status: int = 200, headers: dict | None = None) -> JsonResponse:
    response = JsonResponse(body, status=status, safe=False)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _internal_error(api: str) -> JsonResponse:
    if api == V3:
        return _json({"error": {"code": "INTERNAL_SERVER_ERROR", "message": "Internal server error"}}, 500)
    return _json({"error": "INTERNAL_SERVER_ERROR", "error_description": "Internal server error"}, 500)


def _body(request: HttpRequest) -> bytes:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise BadRequest("Content-Length is not a number") from None
    if length > MAX_BODY:
        raise BadRequest("Request body is too large")
    try:
        body = request.body
    except RequestDataTooBig:
        raise BadRequest("Request body is too large") from None
    if len(body) > MAX_BODY:
        raise BadRequest("Request body is too large")
    return body


def _v2_params(request: HttpRequest) -> dict:
    """$_REQUEST: the query string, overridden by a form or JSON body."""
    params = php_parse_query(request.META.get("QUERY_STRING", ""))
    if request.method != "POST":
        return params
    content_type = (request.content_type or "").lower()
    if content_type == "multipart/form-data":
        try:
            pairs = [(k, v) for k, values in request.POST.lists() for v in values]
        except (TooManyFieldsSent, RequestDataTooBig, ValueError) as exc:
            raise BadRequest(f"Form body could not be read: {exc.__class__.__name__}") from None
        params.update(php_nest(pairs))
        return params
    body = _body(request)
    if not body.strip():
        return params
    if content_type == "application/json":
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise BadRequest("Request body is not valid JSON") from None
        if isinstance(data, list):
            # A JSON array is PHP's positional array: keys "0", "1", ... (FACTS §1).
            data = {str(i): v for i, v in enumerate(data)}
        if not isinstance(data, dict):
            raise BadRequest("JSON body must be an object or an array")
        params.update(data)
        return params
    params.update(php_parse_query(body.decode("utf-8", errors="replace")))
    return params


def _moved_path(request: HttpRequest, slug: str) -> str:
    """The request's path and query after `/sandbox/<slug>/`, for the 302 fault's Location."""
    full = request.get_full_path()
    prefix = f"/sandbox/{slug}/"
    return full[full.index(prefix) + len(prefix):] if prefix in full else full.lstrip("/")


def _answer(answer, *, xml: bool = False) -> HttpResponse:
    if xml and answer.status != 302:
        return HttpResponse(render_xml(answer.body), status=answer.status, content_type="text/xml; charset=utf-8")
    if answer.status == 302:
        response = HttpResponse(status=302, content_type="application/json")
        response["Location"] = answer.headers["Location"]
        return response
    return _json(answer.body, answer.status, answer.headers)


def _v2(request: HttpRequest, *, slug: str, method: str, user_id: int | None, code: str | None):
    xml = method.lower().endswith(".xml")  # FACTS §1: `.xml` after the method name answers XML
    if xml:
        method = method[: -len(".xml")]
    if request.method not in ("GET", "POST", "HEAD"):
        return _json({"error": "INVALID_REQUEST", "error_description": "Use GET or POST"}, 405)
    params, params_error = {}, None
    try:
        params = _v2_params(request)
    except (BadRequest, ParamsError) as exc:
        params_error = str(exc)
    token = params.pop("auth", None) if code is None else None
    params.pop("auth", None)
    answer = sandbox_rest_call(slug=slug, api=V2, method=method, params=params, webhook_user_id=user_id,
                               webhook_code=code, access_token=token if isinstance(token, str) else None,
                               params_error=params_error, secure=request.is_secure(),
                               moved_path=_moved_path(request, slug))
    return _answer(answer, xml=xml)


def _v3(request: HttpRequest, *, slug: str, method: str, user_id: int | None, code: str | None):
    if request.method not in ("GET", "POST"):
        return _json({"error": {"code": "INVALID_REQUEST", "message": "Use POST"}}, 405)
    params, params_error = {}, None
    if request.method == "POST":
        try:
            body = _body(request)
            if body.strip():
                params = json.loads(body)
                if not isinstance(params, dict | list):
                    raise ValueError("not an object")
        except (BadRequest, UnicodeDecodeError, ValueError, RecursionError):
            params, params_error = {}, "The request body is not valid JSON"
    token = None
    if code is None:
        token = params.pop("auth", None) if isinstance(params, dict) else None
        if token is None:
            token = request.GET.get("auth")
    elif isinstance(params, dict):
        params.pop("auth", None)
    answer = sandbox_rest_call(slug=slug, api=V3, method=method, params=params, webhook_user_id=user_id,
                               webhook_code=code, access_token=token if isinstance(token, str) else None,
                               params_error=params_error, idempotency_key=request.headers.get("Idempotency-Key"),
                               secure=request.is_secure(), moved_path=_moved_path(request, slug))
    return _answer(answer)


def _guard(api: str, view, request, **kwargs):
    try:
        return view(request, **kwargs)
    except Exception:
        logger.exception("sandbox %s call failed", api)
        return _internal_error(api)


@csrf_exempt
def rest_v2_webhook(request: HttpRequest, slug: str, user_id: str, code: str, method: str):
    return _guard(V2, _v2, request, slug=slug, method=method, user_id=int(user_id), code=code)


@csrf_exempt
def rest_v2_oauth(request: HttpRequest, slug: str, method: str):
    return _guard(V2, _v2, request, slug=slug, method=method, user_id=None, code=None)


@csrf_exempt
def rest_v3_webhook(request: HttpRequest, slug: str, user_id: str, code: str, method: str):
    return _guard(V3, _v3, request, slug=slug, method=method, user_id=int(user_id), code=code)


@csrf_exempt
def rest_v3_oauth(request: HttpRequest, slug: str, method: str):
    return _guard(V3, _v3, request, slug=slug, method=method, user_id=None, code=None)


@csrf_exempt
def oauth_token(request: HttpRequest):
    try:
        if request.method not in ("GET", "POST"):
            return _json({"error": "invalid_request", "error_description": "Use GET or POST"}, 405)
        params = _v2_params(request)
        base_url = f"{request.scheme}://{request.get_host()}"
        status, body = sandbox_oauth_token(params=params, base_url=base_url)
        return _json(body, status)
    except (BadRequest, ParamsError, UnicodeDecodeError, ValueError) as exc:
        return _json({"error": "invalid_request", "error_description": str(exc)}, 400)
    except Exception:
        logger.exception("sandbox token endpoint failed")
        return _json({"error": "server_error", "error_description": "Internal server error"}, 500)
