"""start_export, get_export and cancel_export over both MCP transports (the plane's /mcp and the
stdio server), against the sandbox portal on the live server: the file itself is never sent over
MCP, get_export gives its path and size."""

import json

import pytest
import requests
from mcp.shared.exceptions import MCPError

from apps.exports.models import Export
from apps.plans.models import Plan
from apps.sandbox.models import SandboxPortal
from tests.integration.exports.seed import seed_leads

from .test_mcp_tools import http_connector, mcp_call, stdio_connector, structured

pytestmark = pytest.mark.django_db(transaction=True)

EXPORT_TOOLS = ["start_export", "get_export", "cancel_export"]


@pytest.fixture(params=["http", "stdio"])
def connect(request, live_server, settings, tmp_path):
    settings.EXPORTS_DIR = str(tmp_path / "exports")
    return (http_connector if request.param == "http" else stdio_connector)(live_server.url)


def drain_all(celery_drain):
    for _ in range(50):
        if not celery_drain():
            return
    raise AssertionError("the broker never ran dry")


def test_export_tools_are_offered_with_the_agents_portals(connect, plane_agent, make_agent):
    async def work(client):
        return (await client.list_tools()).tools

    tools = {t.name: t for t in mcp_call(connect, plane_agent.token, work)}
    assert set(EXPORT_TOOLS) <= set(tools)
    assert tools["start_export"].input_schema["properties"]["portal"]["enum"] == ["demo"]
    assert "not returned" in tools["get_export"].description.lower() and "bytes" in tools["get_export"].description
    lonely = make_agent("lonely")
    assert [t.name for t in mcp_call(connect, lonely.token, work)] == ["capabilities"]


def test_export_to_a_file_then_download_it_over_http(connect, plane_agent, celery_drain, live_server):
    ids = seed_leads(SandboxPortal.objects.get(slug="demo"), 130)

    async def start(client):
        return structured(await client.call_tool("start_export", {
            "portal": "demo", "method": "crm.lead.list", "select": ["ID", "TITLE"], "reason": "a report"}))

    started = mcp_call(connect, plane_agent.token, start)
    assert started["status"] == "queued" and started["format"] == "jsonl"
    assert started["waiting_for"].startswith("a worker") and started["download"] is None
    assert Plan.objects.get(pk=started["plan_id"]).reason == "a report"
    drain_all(celery_drain)

    async def follow(client):
        return structured(await client.call_tool("get_export", {"export_id": started["id"]}))

    done = mcp_call(connect, plane_agent.token, follow)
    assert done["status"] == "succeeded" and done["progress"]["rows_fetched"] == 130
    assert done["waiting_for"] is None
    download = done["download"]
    assert download["path"] == f"/api/v1/exports/{started['id']}/file" and download["format"] == "jsonl"
    assert download["bytes"] == Export.objects.get(pk=started["id"]).file_bytes > 0
    assert "Lead" not in json.dumps({k: v for k, v in done.items() if k != "download"})  # no rows in the answer
    response = requests.get(live_server.url + download["path"], timeout=10,
                            headers={"Authorization": f"Bearer {plane_agent.token}"})
    assert response.status_code == 200 and len(response.content) == download["bytes"]
    assert [int(json.loads(line)["ID"]) for line in response.text.splitlines()] == ids

    async def too_late(client):
        return await client.call_tool("cancel_export", {"export_id": started["id"]})

    refused = mcp_call(connect, plane_agent.token, too_late)
    assert refused.is_error
    assert refused.structured_content["error"]["code"] == "conflict"
    assert refused.structured_content["error"]["status"] == "succeeded"


def test_cancel_an_export_waiting_for_approval(connect, sandbox_portal, make_agent):
    agent = make_agent("careful", portal=sandbox_portal, read="approve")

    async def work(client):
        started = structured(await client.call_tool("start_export", {"portal": "demo", "method": "crm.lead.list",
                                                                      "idempotency_key": "exp-1"}))
        again = structured(await client.call_tool("start_export", {"portal": "demo", "method": "crm.lead.list",
                                                                    "idempotency_key": "exp-1"}))
        cancelled = structured(await client.call_tool("cancel_export", {"export_id": started["id"]}))
        twice = await client.call_tool("cancel_export", {"export_id": started["id"]})
        return started, again, cancelled, twice

    started, again, cancelled, twice = mcp_call(connect, agent.token, work)
    assert started["status"] == "pending_approval" and "approve" in started["waiting_for"]
    assert again["id"] == started["id"] and Export.objects.count() == 1
    assert cancelled["status"] == "cancelled" and cancelled["plan_status"] == "cancelled"
    assert Plan.objects.get(pk=started["plan_id"]).status == "cancelled"
    assert twice.is_error and twice.structured_content["error"]["code"] == "conflict"


def test_another_agents_export_and_bad_ids_are_not_found(connect, plane_agent, sandbox_portal, make_agent):
    other = make_agent("other", portal=sandbox_portal, read="approve")

    async def start(client):
        return structured(await client.call_tool("start_export", {"portal": "demo", "method": "crm.lead.list"}))

    theirs = mcp_call(connect, other.token, start)

    async def peek(client):
        results = []
        for export_id in (theirs["id"], "not-a-uuid", "00000000-0000-0000-0000-000000000000", "../plans"):
            results.append(await client.call_tool("get_export", {"export_id": export_id}))
            results.append(await client.call_tool("cancel_export", {"export_id": export_id}))
        return results

    for result in mcp_call(connect, plane_agent.token, peek):
        assert result.is_error and result.structured_content["error"]["code"] == "not_found"
    assert Export.objects.get(pk=theirs["id"]).status == "pending_approval"


@pytest.mark.parametrize(("tool", "arguments", "field"), [
    ("start_export", {"portal": "demo", "method": "crm.lead.add"}, "method"),  # the plane's own check
    ("start_export", {"portal": "demo"}, "method"),
    ("start_export", {"portal": "demo", "method": "crm.lead.list", "format": "xml"}, "format"),
    ("start_export", {"portal": "demo", "method": "crm.lead.list", "order": {"ID": "up"}}, "order.ID"),
    ("start_export", {"portal": "demo", "method": "crm.lead.list", "select": "ID"}, "select"),
    ("start_export", {"portal": "elsewhere", "method": "crm.lead.list"}, "portal"),
    ("get_export", {}, "export_id"),
    ("cancel_export", {"export_id": "x", "extra": 1}, "extra"),
])
def test_bad_export_input_is_an_mcp_error_with_the_api_code(connect, plane_agent, tool, arguments, field):
    async def work(client):
        with pytest.raises(MCPError) as caught:
            await client.call_tool(tool, arguments)
        return caught.value

    error = mcp_call(connect, plane_agent.token, work)
    assert error.code == -32602
    assert error.data["code"] == "invalid_request" and error.data["field"] == field
    assert not Export.objects.exists()
