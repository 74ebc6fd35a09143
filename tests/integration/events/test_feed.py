"""GET /api/v1/events: the agent's feed of events its packs may read, with a stable cursor."""

import threading
import time

import pytest
from django.db import connection

from apps.events.models import InboundEvent
from apps.events.services import event_process
from apps.portals.services import portal_upsert

URL = "/api/v1/events"


def publish(portal, event, n=0, *, process=True):
    row = InboundEvent.objects.create(portal=portal, event=event, ts=1700000000 + n, payload_hash=f"h{n}",
                                      data={"FIELDS": {"ID": str(n)}})
    if process:
        assert event_process(event_id=row.pk) == "processed"
        row.refresh_from_db()
    return row


@pytest.fixture
def other_portal(db):
    portal, _ = portal_upsert(slug="other", base_url="https://other.bitrix24.com", auth_mode="webhook",
                              secrets={"webhook_code": "x"}, fields={"webhook_user_id": "1"})
    return portal


def events_of(response):
    assert response.status_code == 200, response.content
    return [(e["portal"], e["event"], e["data"]["FIELDS"]["ID"]) for e in response.json()["events"]]


@pytest.mark.django_db
def test_feed_shows_what_the_packs_may_read_oldest_first(api, portal, other_portal, make_agent):
    crm_agent = make_agent("crm", portal=portal, packs=("core",))
    chat_agent = make_agent("chat", portal=portal, packs=("comms",))
    publish(portal, "ONCRMLEADADD", 1)
    publish(portal, "ONIMBOTMESSAGEADD", 2)
    publish(other_portal, "ONCRMLEADADD", 3)  # no grant on this portal
    publish(portal, "ONOFFLINEEVENT", 4)  # internal
    publish(portal, "ONCRMDEALADD", 5, process=False)  # not processed yet
    publish(portal, "ONSOMETHINGUNKNOWN", 6)  # no entity: fail closed
    publish(portal, "ONTASKADD", 7)
    assert events_of(api.get(URL, token=crm_agent.token)) == [
        ("acme", "ONCRMLEADADD", "1"), ("acme", "ONTASKADD", "7")]
    assert events_of(api.get(URL, token=chat_agent.token)) == [("acme", "ONIMBOTMESSAGEADD", "2")]
    body = api.get(URL, token=crm_agent.token).json()
    first = body["events"][0]
    assert set(first) == {"cursor", "portal", "event", "ts", "source", "data", "additional", "received_at"}
    assert first["source"] == "online" and first["ts"] == 1700000001


@pytest.mark.django_db
def test_cursor_is_stable_and_skips_nothing(api, portal, make_agent):
    agent = make_agent("crm", portal=portal, packs=("core",))
    for n in range(5):
        publish(portal, "ONCRMLEADADD", n)
    page1 = api.get(URL, token=agent.token, limit=2).json()
    assert [e["data"]["FIELDS"]["ID"] for e in page1["events"]] == ["0", "1"]
    page2 = api.get(URL, token=agent.token, limit=2, after=page1["next_cursor"]).json()
    assert [e["data"]["FIELDS"]["ID"] for e in page2["events"]] == ["2", "3"]
    publish(portal, "ONCRMLEADADD", 5)
    page3 = api.get(URL, token=agent.token, limit=10, after=page2["next_cursor"]).json()
    assert [e["data"]["FIELDS"]["ID"] for e in page3["events"]] == ["4", "5"]
    empty = api.get(URL, token=agent.token, after=page3["next_cursor"]).json()
    assert empty == {"events": [], "next_cursor": page3["next_cursor"]}
    again = api.get(URL, token=agent.token, limit=2, after=page1["next_cursor"]).json()
    assert again == page2


@pytest.mark.django_db
def test_filtered_events_move_the_cursor(api, portal, make_agent):
    agent = make_agent("chat", portal=portal, packs=("comms",))
    for n in range(3):
        publish(portal, "ONCRMLEADADD", n)
    body = api.get(URL, token=agent.token).json()
    assert body["events"] == [] and int(body["next_cursor"]) == InboundEvent.objects.order_by("-feed_seq")[0].feed_seq


@pytest.mark.django_db
def test_types_and_portal_filters(api, portal, other_portal, make_agent):
    agent = make_agent("crm", portal=portal, packs=("core",))
    from apps.policy.services import grant_upsert

    grant_upsert(agent=agent, portal=other_portal, pack="core")
    publish(portal, "ONCRMLEADADD", 1)
    publish(portal, "ONCRMDEALADD", 2)
    publish(other_portal, "ONCRMDEALADD", 3)
    assert events_of(api.get(URL, token=agent.token, types="oncrmdealadd")) == [
        ("acme", "ONCRMDEALADD", "2"), ("other", "ONCRMDEALADD", "3")]
    assert events_of(api.get(URL, token=agent.token, portal="other")) == [("other", "ONCRMDEALADD", "3")]
    assert events_of(api.get(URL, token=agent.token, portal="acme", types="ONCRMLEADADD,ONCRMDEALADD")) == [
        ("acme", "ONCRMLEADADD", "1"), ("acme", "ONCRMDEALADD", "2")]


@pytest.mark.django_db
@pytest.mark.parametrize(("params", "status", "field"), [
    ({"after": "abc"}, 400, "after"), ({"after": "-1"}, 400, "after"), ({"wait": "31"}, 400, "wait"),
    ({"wait": "x"}, 400, "wait"), ({"limit": "0"}, 400, "limit"), ({"limit": "501"}, 400, "limit"),
    ({"types": "ON CRM"}, 400, "types"), ({"portal": "nope"}, 404, "portal"), ({"portal": "other"}, 404, "portal"),
])
def test_bad_parameters(api, portal, other_portal, make_agent, params, status, field):
    agent = make_agent("crm", portal=portal, packs=("core",))
    response = api.get(URL, token=agent.token, **params)
    assert response.status_code == status
    assert response.json()["error"]["field"] == field


@pytest.mark.django_db
def test_authentication_and_methods(api, client, portal):
    assert api.get(URL, token=None).status_code == 401
    assert api.get(URL, token="not-a-token").status_code == 401
    assert client.post(URL).status_code == 405


@pytest.mark.django_db(transaction=True)
def test_wait_returns_when_an_event_arrives(api, portal, make_agent):
    agent = make_agent("crm", portal=portal, packs=("core",))
    first = publish(portal, "ONCRMLEADADD", 1)

    def later():
        time.sleep(0.5)
        publish(portal, "ONCRMLEADADD", 2)
        connection.close()

    thread = threading.Thread(target=later)
    thread.start()
    response = api.get(URL, token=agent.token, after=str(first.feed_seq), wait="20")
    thread.join()
    assert events_of(response) == [("acme", "ONCRMLEADADD", "2")]


@pytest.mark.django_db
def test_openapi_fragment_describes_the_feed():
    from apps.events.openapi import add_events_paths

    document = add_events_paths({"openapi": "3.1.0", "paths": {}, "components": {"schemas": {}}})
    get = document["paths"]["/api/v1/events"]["get"]
    assert {p["name"] for p in get["parameters"]} == {"portal", "after", "types", "limit", "wait"}
    assert "InboundEvent" in document["components"]["schemas"]
    assert set(get["responses"]) >= {"200", "400", "401", "404"}
