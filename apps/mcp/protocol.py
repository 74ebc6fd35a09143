"""MCP's JSON-RPC exchange (handshake era, protocol 2024-11-05 … 2025-11-25), stateless.

Every POST carries one JSON-RPC message and the agent's bearer token; nothing is kept between
requests, so any WSGI worker can answer any request and no session id is issued.

Errors:
- protocol errors are JSON-RPC errors (-32700 parse, -32600 invalid request, -32601 unknown
  method, -32602 invalid params, -32603 internal);
- bad tool input (unknown tool, arguments that break the tool's schema, anything the API
  answers `invalid_request` to) is a JSON-RPC -32602 error whose `data` is the API's error
  object: `{"code": "invalid_request", "message": ..., "field": ...}`;
- a refusal or failure of a valid call (`not_granted` with `pack`, `denied_by_policy`,
  `not_found`, `conflict`, `idempotency_mismatch`, ...) is a tool result with `isError: true`
  whose structured content is `{"error": {...}}`, exactly the body the JSON API would answer.
"""

import logging

from apps.core import aio
from apps.core.exceptions import ApplicationError, InvalidRequest
from clients.b24cp import mcp_tools

from .tools import call_tool, tools_for_agent

logger = logging.getLogger(__name__)

PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL_ERROR = -32700, -32600, -32601, -32602, -32603
SUPPORTED_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
LATEST_VERSION = SUPPORTED_VERSIONS[-1]


class RpcError(Exception):
    def __init__(self, code: int, message: str, data=None):
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


def error_message(msg_id, code: int, message: str, data=None) -> dict:
    error = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": msg_id, "error": error}


def is_request(message) -> bool:
    return isinstance(message, dict) and "method" in message and "id" in message


def handle(message, *, request, agent):
    """Answer one JSON-RPC message: a response for a request, None for a notification or a
    response from the client, or `aio.Waiting` for the response when a tool waits."""
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        return error_message(None, INVALID_REQUEST, "Send one JSON-RPC 2.0 object.")
    msg_id = message.get("id")
    if "method" not in message:
        return None  # a client's response to a server request: we never send any
    if "id" not in message:
        return None  # notifications (notifications/initialized, cancelled, ...): nothing to do
    if not isinstance(msg_id, str | int) or isinstance(msg_id, bool):
        return error_message(None, INVALID_REQUEST, "id must be a string or a number.")
    method = message.get("method")
    params = message.get("params")
    if params is not None and not isinstance(params, dict):
        return error_message(msg_id, INVALID_PARAMS, "params must be an object.")
    answer = _respond(msg_id, method, request, lambda: _dispatch(method, params or {}, request=request, agent=agent))
    if isinstance(answer, aio.Waiting):  # a tool waits (a plan, the event feed): answered when it ends
        return aio.Waiting(wait=_guarded(answer.wait),
                           then=lambda result: _respond(msg_id, method, request, result if isinstance(
                               result, _Failed) else lambda: answer.then(result)))
    return answer


def _respond(msg_id, method, request, run):
    """The JSON-RPC response to `run()`'s result, or to its error; `aio.Waiting` passes through."""
    try:
        result = run()
    except RpcError as exc:
        return error_message(msg_id, exc.code, exc.message, exc.data)
    except Exception:
        logger.exception("Unhandled error in MCP method %s", method)
        return error_message(msg_id, INTERNAL_ERROR, "Internal error; it has been logged.",
                             {"code": "internal_error", "request_id": getattr(request, "request_id", None)})
    if isinstance(result, aio.Waiting):
        return result
    return {"jsonrpc": "2.0", "id": msg_id, "result": result}


def _guarded(wait):
    """The wait, an error in it handed on to be answered as one (not raised through the view)."""
    async def run():
        try:
            return await wait()
        except Exception as exc:  # noqa: BLE001 - answered as an internal error by _respond
            return _Failed(exc)
    return run


class _Failed:
    """A failed wait: calling it raises the error again, for `_respond` to answer."""

    def __init__(self, exc: Exception):
        self.exc = exc

    def __call__(self):
        raise self.exc


def _dispatch(method, params: dict, *, request, agent) -> dict:
    if method == "initialize":
        asked = params.get("protocolVersion")
        return {
            "protocolVersion": asked if asked in SUPPORTED_VERSIONS else LATEST_VERSION,
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": {"name": mcp_tools.SERVER_NAME, "title": "Bitrix24 agent control plane",
                           "version": mcp_tools.SERVER_VERSION},
            "instructions": mcp_tools.INSTRUCTIONS,
        }
    if method == "ping":
        return {}
    if method == "tools/list":
        return {"tools": tools_for_agent(agent)}
    if method == "tools/call":
        return _call(params, request=request, agent=agent)
    raise RpcError(METHOD_NOT_FOUND, "Method not found", method if isinstance(method, str) else None)


def _call(params: dict, *, request, agent) -> dict:
    name = params.get("name")
    tool = mcp_tools.find_tool(tools_for_agent(agent), name)
    if tool is None:
        offered = ", ".join(t["name"] for t in tools_for_agent(agent))
        raise RpcError(INVALID_PARAMS, f"Unknown tool {name!r}; this agent is offered: {offered}.",
                       {"code": "invalid_request", "message": f"Unknown tool {name!r}.", "field": "name"})
    try:
        arguments = mcp_tools.validate_arguments(tool, params.get("arguments"))
    except mcp_tools.ArgumentError as exc:
        raise RpcError(INVALID_PARAMS, exc.message, exc.as_error()) from None
    answer = _tool_outcome(lambda: call_tool(request=request, agent=agent, name=tool["name"], arguments=arguments))
    if isinstance(answer, aio.Waiting):
        return aio.Waiting(wait=answer.wait, then=lambda result: _tool_outcome(lambda: answer.then(result)))
    return answer


def _tool_outcome(run):
    """The tool result of `run()` (the tool's answer), or its error as MCP reports it: bad input a
    JSON-RPC error, a refusal or failure a tool result with isError. `aio.Waiting` passes through."""
    try:
        answer = run()
    except InvalidRequest as exc:
        raise RpcError(INVALID_PARAMS, exc.message, exc.as_dict()) from None
    except ApplicationError as exc:
        return mcp_tools.tool_error(exc.as_dict())
    return answer if isinstance(answer, aio.Waiting) else mcp_tools.tool_result(answer)

