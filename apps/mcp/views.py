"""`/mcp`: MCP over streamable HTTP, served by the plane itself (no second server). Under uvicorn a
tool that waits holds no thread (`aio.long_poll`); any WSGI server runs it too, a worker waiting.

Stateless and JSON-only: a POST carries one JSON-RPC message with `Authorization: Bearer <agent
token>`; a request gets `application/json`, a notification 202 with no body. No `Mcp-Session-Id`
is issued (the spec makes it optional) and there is no server-to-client stream, so GET and
DELETE answer 405. A browser's `Origin` must name one of ALLOWED_HOSTS (403 otherwise; agents'
HTTP clients send none). Transport-level failures (no or bad token, rate limit, body too large, not
JSON) answer the API's HTTP status with a JSON-RPC error whose `data` is the API's error object.
"""

import json
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.http.request import validate_host
from django.views.decorators.csrf import csrf_exempt

from apps.agents.auth import authenticate_agent
from apps.agents.ratelimit import check_rate
from apps.core import aio
from apps.core.api import read_body
from apps.core.exceptions import ApplicationError

from . import protocol

PROTOCOL_HEADER = "MCP-Protocol-Version"


def _json(body: dict, status: int = 200, headers: dict | None = None) -> JsonResponse:
    response = JsonResponse(body, status=status, json_dumps_params={"ensure_ascii": False})
    for key, value in (headers or {}).items():
        response[key] = value
    return response


def _transport_error(exc: ApplicationError, request) -> JsonResponse:
    data = exc.as_dict()
    data.setdefault("request_id", getattr(request, "request_id", None))
    headers = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="control-plane"'
    if getattr(exc, "retry_after", None):
        headers["Retry-After"] = str(exc.retry_after)
    code = protocol.INVALID_REQUEST if exc.status < 500 else protocol.INTERNAL_ERROR
    return _json(protocol.error_message(None, code, exc.message, data), status=exc.status, headers=headers)


def _origin_allowed(origin: str) -> bool:
    """The spec's DNS-rebinding guard: a browser's Origin must name one of ALLOWED_HOSTS (agents'
    own HTTP clients send no Origin)."""
    host = urlsplit(origin).hostname
    return bool(host) and validate_host(host, settings.ALLOWED_HOSTS)


# Bearer-token endpoint: no cookie or session is read (apps.agents.auth), so CSRF does not apply.
# Written as its sync part (`aio.long_poll`): a tool that waits (a plan, the event feed) is awaited
# as the API's `?wait=` is, holding no thread meanwhile under ASGI.
@csrf_exempt
@aio.long_poll
def mcp_endpoint(request):
    if request.method != "POST":
        response = _json(protocol.error_message(None, protocol.INVALID_REQUEST,
                                                "This MCP endpoint is stateless: POST one JSON-RPC message."),
                         status=405)
        response["Allow"] = "POST"
        return response
    origin = request.headers.get("Origin")
    if origin and not _origin_allowed(origin):
        return _json(protocol.error_message(None, protocol.INVALID_REQUEST, "This Origin may not call /mcp.",
                                            {"code": "permission_denied", "field": "Origin"}), status=403)
    try:
        agent = authenticate_agent(request)
        check_rate(agent)
        raw = read_body(request)
    except ApplicationError as exc:
        return _transport_error(exc, request)
    if (request.content_type or "").lower() != "application/json":
        return _json(protocol.error_message(None, protocol.INVALID_REQUEST, "Send Content-Type: application/json.",
                                            {"code": "unsupported_media_type", "field": "Content-Type"}),
                     status=415)
    try:
        message = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        return _json(protocol.error_message(None, protocol.PARSE_ERROR, f"Not JSON: {exc}",
                                            {"code": "invalid_request", "field": "body"}), status=400)
    if isinstance(message, list):
        return _json(protocol.error_message(None, protocol.INVALID_REQUEST,
                                            "JSON-RPC batches are not supported; send one message per POST."),
                     status=400)
    version = request.headers.get(PROTOCOL_HEADER)
    discover = isinstance(message, dict) and message.get("method") == "server/discover"
    if version and version not in protocol.SUPPORTED_VERSIONS and not discover:
        return _json(protocol.error_message(
            None, protocol.INVALID_REQUEST, f"Unsupported MCP-Protocol-Version {version!r}.",
            {"code": "invalid_request", "field": PROTOCOL_HEADER, "supported": list(protocol.SUPPORTED_VERSIONS)}),
            status=400)
    answer = protocol.handle(message, request=request, agent=agent)
    if answer is None:
        return HttpResponse(status=202)
    if isinstance(answer, aio.Waiting):
        return answer.map(_json)
    return _json(answer)
