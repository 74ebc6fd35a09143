"""The MCP tools through the official `mcp` SDK client, over both transports: the plane's own
/mcp endpoint (streamable HTTP, bearer token) and the stdio server (`clients/b24cp/mcp_stdio.py`,
a subprocess that talks to the plane's JSON API with B24CP_URL/B24CP_TOKEN)."""

import os
import sys
from pathlib import Path

import anyio
import httpx2
import pytest
import requests
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from apps.plans.models import Plan

pytestmark = pytest.mark.django_db(transaction=True)

ALL_BUT_EVENTS = ["capabilities", "describe_method", "submit_plan", "get_plan", "cancel_plan", "list_plans",
                  "start_export", "get_export", "cancel_export"]


REPO = Path(__file__).resolve().parents[3]


def mcp_call(connect, token, work):
    """Connect the SDK's client (`connect` is the transport under test) and run `work(client)`."""
    return anyio.run(connect, token, work)


def http_connector(base_url):
    async def connect(token, work):
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
            async with Client(streamable_http_client(f"{base_url}/mcp", http_client=http)) as client:
                return await work(client)

    return connect


def stdio_connector(base_url):
    async def connect(token, work):
        env = {**os.environ, "B24CP_URL": base_url, "B24CP_TOKEN": token}
        params = StdioServerParameters(command=sys.executable, args=["-m", "clients.b24cp.mcp_stdio"], env=env,
                                       cwd=str(REPO))
        async with Client(params) as client:
            return await work(client)

    return connect


def structured(result):
    assert result.structured_content is not None
    return result.structured_content


@pytest.fixture(params=["http", "stdio"])
def mcp_url(request, live_server):
    """The transport under test, as a connector (named for the HTTP case it started as)."""
    return (http_connector if request.param == "http" else stdio_connector)(live_server.url)


def test_lists_the_tools_the_agent_holds(mcp_url, plane_agent):
    async def work(client):
        return client.server_info, client.instructions, (await client.list_tools()).tools

    info, instructions, tools = mcp_call(mcp_url, plane_agent.token, work)
    assert info.name == "bitrix24-control-plane"
    assert "pending_approval" in instructions and "destructive" in instructions
    assert [t.name for t in tools] == [*ALL_BUT_EVENTS, "read_events"]
    submit = next(t for t in tools if t.name == "submit_plan")
    assert submit.input_schema["properties"]["portal"]["enum"] == ["demo"]
    assert "core (read auto, write approve, destructive approve2)" in submit.description
    assert "approve" in submit.description and "pending_approval" in submit.description


def test_an_agent_without_grants_is_offered_capabilities_only(mcp_url, make_agent):
    lonely = make_agent("lonely")

    async def work(client):
        tools = (await client.list_tools()).tools
        with pytest.raises(MCPError) as refused:
            await client.call_tool("submit_plan", {"portal": "demo", "method": "user.current"})
        return tools, refused.value

    tools, refused = mcp_call(mcp_url, lonely.token, work)
    assert [t.name for t in tools] == ["capabilities"]
    assert "no grant" in tools[0].description
    assert refused.code == -32602 and refused.data["code"] == "invalid_request"


def test_every_tool(mcp_url, plane_agent, celery_drain):
    token = plane_agent.token

    async def discover(client):
        caps = structured(await client.call_tool("capabilities", {}))
        described = structured(await client.call_tool("describe_method", {"name": "crm.lead.add", "portal": "demo"}))
        read = structured(await client.call_tool("submit_plan", {
            "portal": "demo", "method": "user.current", "params": {}, "wait": 0, "reason": "who am I"}))
        write = structured(await client.call_tool("submit_plan", {
            "portal": "demo", "method": "crm.lead.add", "params": {"fields": {"TITLE": "From MCP"}},
            "reason": "a visitor asked", "wait": 0, "idempotency_key": "mcp-lead-1"}))
        again = structured(await client.call_tool("submit_plan", {
            "portal": "demo", "method": "crm.lead.add", "params": {"fields": {"TITLE": "From MCP"}},
            "reason": "a visitor asked", "wait": 0, "idempotency_key": "mcp-lead-1"}))
        dry = structured(await client.call_tool("submit_plan", {
            "portal": "demo", "method": "crm.lead.delete", "params": {"id": 1}, "dry_run": True}))
        return caps, described, read, write, again, dry

    caps, described, read, write, again, dry = mcp_call(mcp_url, token, discover)
    assert caps["portals"][0]["portal"] == "demo"
    assert [g["pack"] for g in caps["portals"][0]["grants"]] == ["core"]
    assert described["risk"] == "write" and described["granted"] and described["policy"] == "approve"
    assert "core" in described["packs"] and described["usual_params"]["fields"]
    assert described["documentation"].startswith("https://github.com/bitrix24/b24restdocs/")
    assert read["status"] == "approved" and read["waiting_for"].startswith("a worker")
    assert write["status"] == "pending_approval" and write["risk"] == "write"
    assert write["waiting_for"].startswith("1 more approval")
    assert again["id"] == write["id"]  # the same idempotency key: the same plan
    assert dry["dry_run"] is True and dry["would_be"] == "pending_approval" and dry["approvals_required"] == 2
    assert Plan.objects.count() == 2

    # the worker runs the auto read against the sandbox portal over HTTP
    assert "apps.plans.tasks.execute_plan" in [name for name, *_ in celery_drain()]

    async def follow(client):
        done = structured(await client.call_tool("get_plan", {"plan_id": read["id"], "wait": 2}))
        listed = structured(await client.call_tool("list_plans", {"limit": 1}))
        page2 = structured(await client.call_tool("list_plans", {"limit": 1, "cursor": listed["next_cursor"]}))
        cancelled = structured(await client.call_tool("cancel_plan", {"plan_id": write["id"]}))
        twice = await client.call_tool("cancel_plan", {"plan_id": write["id"]})
        return done, listed, page2, cancelled, twice

    done, listed, page2, cancelled, twice = mcp_call(mcp_url, token, follow)
    assert done["status"] == "succeeded" and done["waiting_for"] is None
    assert done["result"]["steps"]["call"]["result"]["ID"]
    assert len(listed["plans"]) == 1 and listed["next_cursor"]
    assert {listed["plans"][0]["id"], page2["plans"][0]["id"]} == {read["id"], write["id"]}
    assert cancelled["status"] == "cancelled"
    assert twice.is_error and twice.structured_content["error"]["code"] == "conflict"


def test_ungranted_method_is_refused_naming_the_pack(mcp_url, plane_agent):
    async def work(client):
        return await client.call_tool("submit_plan", {
            "portal": "demo", "method": "im.message.add", "params": {"DIALOG_ID": "chat1", "MESSAGE": "hi"}})

    result = mcp_call(mcp_url, plane_agent.token, work)
    assert result.is_error
    error = result.structured_content["error"]
    assert error["code"] == "not_granted" and error["pack"] == "comms"
    assert "comms" in result.content[0].text
    assert not Plan.objects.exists()


def test_policy_deny_is_refused(mcp_url, sandbox_portal, make_agent):
    agent = make_agent("careful", portal=sandbox_portal, destructive="deny")

    async def work(client):
        return await client.call_tool("submit_plan", {"portal": "demo", "method": "crm.lead.delete",
                                                      "params": {"id": 1}})

    result = mcp_call(mcp_url, agent.token, work)
    assert result.is_error and result.structured_content["error"]["code"] == "denied_by_policy"


@pytest.mark.parametrize(("tool", "arguments", "field"), [
    ("submit_plan", {"portal": "demo", "method": 5}, "method"),
    ("submit_plan", {"portal": "demo"}, "method"),  # neither method nor steps: the API's own check
    ("submit_plan", {"portal": "demo", "method": "user.current", "wait": 31}, "wait"),
    ("submit_plan", {"portal": "demo", "method": "user current"}, "method"),
    ("submit_plan", {"portal": "demo", "steps": [{"name": "a b", "method": "user.current"}]}, "steps.0.name"),
    ("submit_plan", {"portal": "elsewhere", "method": "user.current"}, "portal"),
    ("get_plan", {}, "plan_id"),
    ("list_plans", {"cursor": "not-a-cursor"}, "cursor"),
    ("describe_method", {"name": "crm.lead.add", "portal": "demo", "extra": 1}, "extra"),
    ("no_such_tool", {}, "name"),
])
def test_bad_input_is_an_mcp_error_with_the_api_code(mcp_url, plane_agent, tool, arguments, field):
    async def work(client):
        with pytest.raises(MCPError) as caught:
            await client.call_tool(tool, arguments)
        return caught.value

    error = mcp_call(mcp_url, plane_agent.token, work)
    assert error.code == -32602
    assert error.data["code"] == "invalid_request" and error.data["field"] == field


def test_another_agents_plan_is_not_found(mcp_url, plane_agent, sandbox_portal, make_agent):
    other = make_agent("other", portal=sandbox_portal)

    async def submit(client):
        return structured(await client.call_tool("submit_plan", {"portal": "demo", "method": "crm.lead.add",
                                                                 "params": {"fields": {"TITLE": "x"}}, "wait": 0}))

    plan = mcp_call(mcp_url, other.token, submit)

    async def peek(client):
        return (await client.call_tool("get_plan", {"plan_id": plan["id"]}),
                await client.call_tool("cancel_plan", {"plan_id": plan["id"]}))

    for result in mcp_call(mcp_url, plane_agent.token, peek):
        assert result.is_error and result.structured_content["error"]["code"] == "not_found"


def test_transport_errors_are_json_rpc(live_server, plane_agent):
    url = f"{live_server.url}/mcp"
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "1"}}}
    auth = {"Authorization": f"Bearer {plane_agent.token}"}

    no_token = requests.post(url, json=init, timeout=10)
    assert no_token.status_code == 401 and no_token.headers["WWW-Authenticate"].startswith("Bearer")
    assert no_token.json()["error"]["data"]["code"] == "unauthenticated"

    ok = requests.post(url, json=init, headers=auth, timeout=10)
    assert ok.status_code == 200 and ok.json()["result"]["protocolVersion"] == "2025-06-18"
    assert "Mcp-Session-Id" not in ok.headers  # stateless

    notified = requests.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=auth,
                             timeout=10)
    assert notified.status_code == 202 and notified.content == b""

    ping = requests.post(url, json={"jsonrpc": "2.0", "id": "p", "method": "ping"}, headers=auth, timeout=10)
    assert ping.json() == {"jsonrpc": "2.0", "id": "p", "result": {}}

    unknown = requests.post(url, json={"jsonrpc": "2.0", "id": 2, "method": "resources/list"}, headers=auth,
                            timeout=10)
    assert unknown.json()["error"]["code"] == -32601

    garbage = requests.post(url, data=b"{not json", headers={**auth, "Content-Type": "application/json"}, timeout=10)
    assert garbage.status_code == 400 and garbage.json()["error"]["code"] == -32700

    batch = requests.post(url, json=[init], headers=auth, timeout=10)
    assert batch.status_code == 400 and batch.json()["error"]["code"] == -32600

    not_rpc = requests.post(url, json={"id": 3, "method": "ping"}, headers=auth, timeout=10)
    assert not_rpc.json()["error"]["code"] == -32600

    bad_params = requests.post(url, json={"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": [1]},
                               headers=auth, timeout=10)
    assert bad_params.json()["error"]["code"] == -32602

    wrong_version = requests.post(url, json=init, headers={**auth, "MCP-Protocol-Version": "1999-01-01"}, timeout=10)
    assert wrong_version.status_code == 400

    get = requests.get(url, headers=auth, timeout=10)
    assert get.status_code == 405 and get.headers["Allow"] == "POST"
    assert get.headers["Content-Type"] == "application/json"
