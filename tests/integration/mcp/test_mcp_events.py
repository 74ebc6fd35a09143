"""read_events: offered only where the plane serves the event feed, and answered by that feed."""

import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db


def rpc(client, token, method, params=None, msg_id=1):
    body = {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params or {}}
    response = client.post("/mcp", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    return response.json()


def tool_names(client, token):
    return [t["name"] for t in rpc(client, token, "tools/list")["result"]["tools"]]


def test_no_feed_no_tool(client, agent, settings):
    settings.ROOT_URLCONF = "tests.integration.mcp.catchall_urls"
    assert "read_events" not in tool_names(client, agent.token)
    answer = rpc(client, agent.token, "tools/call", {"name": "read_events", "arguments": {}})
    assert answer["error"]["code"] == -32602 and answer["error"]["data"]["field"] == "name"


@override_settings(ROOT_URLCONF="tests.integration.mcp.events_urls")
def test_the_feed_is_read_with_the_agents_credentials(client, agent, make_agent):
    assert tool_names(client, agent.token)[-1] == "read_events"
    answer = rpc(client, agent.token, "tools/call", {"name": "read_events", "arguments": {"after": "c1", "wait": 0}})
    result = answer["result"]
    assert result["isError"] is False
    assert result["structuredContent"] == {"agent": "agent-a", "after": "c1", "wait": "0", "next_cursor": "c2",
                                           "events": [{"event": "ONCRMLEADADD", "data": {"FIELDS": {"ID": 7}}}]}
    bad = rpc(client, agent.token, "tools/call", {"name": "read_events", "arguments": {"after": "bad"}})
    assert bad["error"]["code"] == -32602
    data = bad["error"]["data"]
    assert (data["code"], data["field"], data["message"]) == (
        "invalid_request", "after", "after is not a cursor this API gave out.")
    # an agent without any grant is still offered capabilities only
    assert tool_names(client, make_agent("nobody").token) == ["capabilities"]



def test_the_real_feed_answers_read_events(client, agent, portal):
    from apps.events.models import InboundEvent
    from apps.events.services import event_process

    event = InboundEvent.objects.create(portal=portal, event="ONCRMLEADADD", ts=1, payload_hash="h1",
                                        data={"FIELDS": {"ID": "5"}})
    event_process(event_id=event.pk)
    assert "read_events" in tool_names(client, agent.token)
    result = rpc(client, agent.token, "tools/call", {"name": "read_events", "arguments": {"wait": 0}})["result"]
    assert result["isError"] is False
    assert [e["event"] for e in result["structuredContent"]["events"]] == ["ONCRMLEADADD"]


def test_a_read_events_call_counts_once_against_the_agents_rate(client, agent, portal, settings):
    """/mcp counts the call; the feed it calls in-process does not count it again."""
    from django.core.cache import cache

    cache.clear()
    settings.API_RATE_PER_MINUTE = 3
    answers = [rpc(client, agent.token, "tools/call", {"name": "read_events", "arguments": {"wait": 0}}, msg_id=i)
               for i in range(3)]
    assert all(a["result"]["isError"] is False for a in answers), answers
    refused = client.post("/mcp", {"jsonrpc": "2.0", "id": 9, "method": "ping"}, content_type="application/json",
                          HTTP_AUTHORIZATION=f"Bearer {agent.token}")
    assert refused.status_code == 429  # the fourth request of the minute
