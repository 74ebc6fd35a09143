"""The plane's MCP tools over stdio, for local agents (Claude Desktop/Code, Cursor, OpenClaw, ...).

    B24CP_URL=https://plane.example.com B24CP_TOKEN=... python -m clients.b24cp.mcp_stdio

It offers exactly the tools of the plane's own `/mcp` endpoint (`mcp_tools`), filtered by the
agent's grants, and answers them through the JSON API with `b24cp.Client`; it holds no state and
no secret but the agent token from the environment. Needs the official `mcp` SDK (pip install mcp).
Errors have the same shape as on /mcp: bad tool input is a JSON-RPC -32602 error whose data is
the API's `{"code": "invalid_request", ...}`; a refused or failed call is a tool result with
`isError` and `{"error": {...}}` as the API answered it.
"""

from __future__ import annotations

import sys
from typing import Any

import anyio
import anyio.to_thread
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError

from . import mcp_tools
from .client import ApiError, Client, ClientError

INVALID_PARAMS, INTERNAL_ERROR = -32602, -32603


_events_available: dict[str, bool] = {}


def _tools(client: Client) -> list[dict[str, Any]]:
    """The agent's tools, from its capabilities now; whether the plane has the event feed is
    asked once per process."""
    if client.base_url not in _events_available:
        try:
            client.events(limit=1)
            _events_available[client.base_url] = True
        except ApiError as exc:
            _events_available[client.base_url] = exc.code != "not_available"
    return mcp_tools.tools_for(client.capabilities(), events_available=_events_available[client.base_url])


def run_tool(client: Client, name: str, arguments: dict[str, Any] | None) -> dict[str, Any]:
    """One tools/call as a plain dict result; raises MCPError for bad input (blocking: urllib)."""
    try:
        tool = mcp_tools.find_tool(_tools(client), name)
        if tool is None:
            raise MCPError(INVALID_PARAMS, f"Unknown tool {name!r}.",
                           {"code": "invalid_request", "message": f"Unknown tool {name!r}.", "field": "name"})
        try:
            args = mcp_tools.validate_arguments(tool, arguments)
        except mcp_tools.ArgumentError as exc:
            raise MCPError(INVALID_PARAMS, exc.message, exc.as_error()) from None
        return mcp_tools.tool_result(_dispatch(client, tool["name"], args))
    except ApiError as exc:
        error = {"code": exc.code, "message": exc.message, **exc.details}
        if exc.status == 400:
            raise MCPError(INVALID_PARAMS, exc.message, error) from None
        return mcp_tools.tool_error(error)
    except ClientError as exc:  # the plane is unreachable: the agent should know, not crash
        return mcp_tools.tool_error({"code": "unreachable", "message": str(exc)})


def _dispatch(client: Client, name: str, args: dict[str, Any]) -> dict[str, Any]:
    if name == "capabilities":
        return client.capabilities()
    if name == "describe_method":
        return mcp_tools.describe_answer(client.describe(args["name"], portal=args["portal"]))
    if name == "submit_plan":
        body = mcp_tools.submit_body(args)
        if ("method" in body) == ("steps" in body):
            answer = _submit_raw(client, body, args)  # the plane answers its own invalid_request
        else:
            answer = client.submit(
                body["portal"], method=body.get("method"), params=body.get("params"), steps=body.get("steps"),
                reason=body.get("reason"), idempotency_key=body.get("idempotency_key"),
                wait=args["wait"], dry_run=args["dry_run"],
            )
        return answer if answer.get("dry_run") else mcp_tools.plan_answer(answer)
    if name == "get_plan":
        return mcp_tools.plan_answer(client.get(args["plan_id"], wait=args["wait"]))
    if name == "cancel_plan":
        return mcp_tools.plan_answer(client.cancel(args["plan_id"]))
    if name == "list_plans":
        answer = client.list(status=args.get("status"), portal=args.get("portal"), limit=args["limit"],
                             cursor=args.get("cursor"))
        return {**answer, "plans": [mcp_tools.plan_answer(p) for p in answer.get("plans", [])]}
    if name == "start_export":
        body = mcp_tools.export_body(args)
        return mcp_tools.export_answer(client._request("POST", "/api/v1/exports", body=body))  # noqa: SLF001
    if name == "get_export":
        return mcp_tools.export_answer(client.export_get(args["export_id"]))
    if name == "cancel_export":
        return mcp_tools.export_answer(client.export_cancel(args["export_id"]))
    if name == "read_events":
        return client.events(after=args.get("after"), wait=args["wait"], limit=args.get("limit"))
    raise MCPError(INVALID_PARAMS, f"Unknown tool {name!r}.")  # tools_for offers no other


def _submit_raw(client: Client, body: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
    query = {"dry_run": 1} if args["dry_run"] else None
    return client._request("POST", "/api/v1/plans", query=query, body=body)  # noqa: SLF001


def build_server(client: Client) -> Server:
    async def list_tools(ctx, params) -> types.ListToolsResult:
        try:
            tools = await anyio.to_thread.run_sync(_tools, client)
        except ClientError as exc:
            raise MCPError(INTERNAL_ERROR, f"The control plane did not answer: {exc}") from None
        return types.ListToolsResult(tools=[types.Tool.model_validate(t) for t in tools])

    async def call_tool(ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
        result = await anyio.to_thread.run_sync(run_tool, client, params.name, params.arguments)
        return types.CallToolResult.model_validate(result)

    return Server(mcp_tools.SERVER_NAME, version=mcp_tools.SERVER_VERSION, instructions=mcp_tools.INSTRUCTIONS,
                  on_list_tools=list_tools, on_call_tool=call_tool)


async def serve(client: Client) -> None:
    server = build_server(client)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


def main() -> int:
    try:
        client = Client.from_env()
    except ClientError as exc:
        print(f"b24cp MCP server: {exc}", file=sys.stderr)
        return 2
    anyio.run(serve, client)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
