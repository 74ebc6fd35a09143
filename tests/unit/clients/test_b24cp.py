"""b24cp without a plane: exit-code mapping, argument parsing, the shared MCP tool definitions."""

import ast
from pathlib import Path

import pytest

from clients.b24cp import ApiError, Client, ClientError, Unreachable, mcp_tools
from clients.b24cp.cli import (
    EXIT_ERROR,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PENDING,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    error_exit_code,
    plan_exit_code,
)

PACKAGE = Path(__file__).resolve().parents[3] / "clients" / "b24cp"


@pytest.mark.parametrize(("status", "code"), [
    ("succeeded", EXIT_OK), ("failed", EXIT_FAILED), ("rejected", EXIT_FAILED), ("expired", EXIT_FAILED),
    ("cancelled", EXIT_FAILED), ("pending_approval", EXIT_PENDING), ("approved", EXIT_PENDING),
    ("executing", EXIT_PENDING), ("submitted", EXIT_PENDING), ("needs_reconciliation", EXIT_PENDING),
])
def test_plan_exit_codes(status, code):
    assert plan_exit_code({"id": "x", "status": status}) == code


def test_error_exit_codes():
    assert plan_exit_code({"dry_run": True, "allowed": True}) == EXIT_OK
    assert plan_exit_code({"dry_run": True, "allowed": False}) == EXIT_REFUSED
    assert error_exit_code(ApiError(403, "not_granted", "no", {"pack": "comms"})) == EXIT_REFUSED
    assert error_exit_code(ApiError(403, "denied_by_policy", "no")) == EXIT_REFUSED
    assert error_exit_code(ApiError(400, "invalid_request", "bad")) == EXIT_ERROR
    assert error_exit_code(ApiError(401, "unauthenticated", "who")) == EXIT_ERROR
    assert error_exit_code(Unreachable("down")) == EXIT_UNREACHABLE
    assert error_exit_code(ClientError("usage")) == EXIT_USAGE
    assert len({EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PENDING, EXIT_REFUSED, EXIT_ERROR, EXIT_UNREACHABLE}) == 7


def test_client_checks_its_configuration_and_hides_the_token():
    with pytest.raises(ClientError, match="B24CP_TOKEN"):
        Client.from_env({"B24CP_URL": "http://plane"})
    with pytest.raises(ClientError, match="http"):
        Client("file:///etc/passwd", "t")
    client = Client.from_env({"B24CP_TOKEN": "secret-token-value"})
    assert client.base_url == "http://127.0.0.1:8000"
    assert "secret-token-value" not in repr(client)
    with pytest.raises(ClientError):
        client.submit("demo")  # neither method nor steps
    with pytest.raises(ClientError):
        client.submit("demo", method="user.current", steps=[{"name": "a", "method": "user.current"}])


def test_the_client_package_is_standard_library_only():
    allowed = {"__future__", "argparse", "collections", "copy", "json", "os", "sys", "time", "typing", "urllib"}
    for path in PACKAGE.glob("*.py"):
        if path.name == "mcp_stdio.py":  # the stdio server needs the mcp SDK, by design
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in allowed or (top == "jsonschema" and path.name == "mcp_tools.py"), (path.name, name)


def _caps(*portals):
    return {"agent": "a", "portals": [
        {"portal": slug, "grants": [{"pack": "core", "policy": {"read": "auto", "write": "approve",
                                                                 "destructive": "approve2"}}]}
        for slug in portals]}


def test_tools_are_filtered_by_grants_and_the_event_feed():
    assert [t["name"] for t in mcp_tools.tools_for({"portals": []}, events_available=True)] == ["capabilities"]
    tools = mcp_tools.tools_for(_caps("demo", "acme"), events_available=False)
    assert "read_events" not in [t["name"] for t in tools]
    submit = mcp_tools.find_tool(tools, "submit_plan")
    assert submit["inputSchema"]["properties"]["portal"]["enum"] == ["demo", "acme"]
    assert "demo: core (read auto, write approve, destructive approve2)" in submit["description"]
    assert "read_events" in [t["name"] for t in mcp_tools.tools_for(_caps("demo"), events_available=True)]
    # the shared definitions are not mutated by filtering
    assert "enum" not in mcp_tools.find_tool(mcp_tools.TOOLS, "submit_plan")["inputSchema"]["properties"]["portal"]


def test_arguments_are_validated_with_the_api_error_shape():
    tool = mcp_tools.find_tool(mcp_tools.tools_for(_caps("demo"), events_available=False), "submit_plan")
    filled = mcp_tools.validate_arguments(tool, {"portal": "demo", "method": "user.current"})
    assert filled["wait"] == mcp_tools.SUBMIT_DEFAULT_WAIT and filled["dry_run"] is False
    for arguments, field in [({"method": "x"}, "portal"), ({"portal": "demo", "wait": -1}, "wait"),
                             ({"portal": "demo", "steps": [{"name": "a"}]}, "steps.0.method"),
                             ({"portal": "demo", "bogus": 1}, "bogus"), ([1], "arguments")]:
        with pytest.raises(mcp_tools.ArgumentError) as caught:
            mcp_tools.validate_arguments(tool, arguments)
        assert caught.value.as_error() == {"code": "invalid_request", "message": caught.value.message,
                                           "field": field}


def test_plan_answer_says_what_the_plan_waits_for():
    pending = mcp_tools.plan_answer({"status": "pending_approval", "approvals_required": 2,
                                     "approvals": [{"decision": "approve"}]})
    assert pending["waiting_for"].startswith("1 more approval")
    assert mcp_tools.plan_answer({"status": "succeeded"})["waiting_for"] is None
    assert "do not resubmit" in mcp_tools.plan_answer({"status": "needs_reconciliation"})["waiting_for"]
    error = mcp_tools.tool_error({"code": "not_granted", "pack": "comms"})
    assert error["isError"] and error["structuredContent"] == {"error": {"code": "not_granted", "pack": "comms"}}
