"""Per-agent subscriptions: created through the API, fanned out when matching events are
processed, delivered to the callback over real HTTP with an HMAC signature."""

import json

import pytest

from apps.approvals.callbacks import verify
from apps.audit.models import AuditEntry
from apps.events import tasks
from apps.events.models import EventSubscription, InboundEvent
from apps.events.services import event_process
from apps.events.subscriptions import deliver
from apps.policy.models import PackGrant
from tests.integration.bitrix.stub import StubServer

URL = "/api/v1/events/subscriptions"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def loopback_callbacks_allowed(settings):
    """The test's callback server listens on 127.0.0.1, which is refused unless allow-listed."""
    settings.CALLBACK_ALLOW_HOSTS = ["127.0.0.1"]


@pytest.fixture
def callback():
    server = StubServer().start()
    server.respond = lambda seen: (200, {"ok": True}, {})
    yield server
    server.stop()


def subscribe(api, agent, **body):
    return api.post(URL, body, token=agent.token)


def new_event(portal, event="ONCRMLEADADD", n=1):
    return InboundEvent.objects.create(portal=portal, event=event, ts=n, payload_hash=f"h{n}",
                                       data={"FIELDS": {"ID": str(n)}})


def test_subscribe_list_unsubscribe(api, portal, make_agent, callback):
    agent = make_agent("crm", portal=portal, packs=("core",))
    other = make_agent("other", portal=portal, packs=("core",))
    created = subscribe(api, agent, callback_url=f"{callback.url}/hook", types=["oncrmleadadd"], portal="acme")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["types"] == ["ONCRMLEADADD"] and body["portal"] == "acme" and len(body["secret"]) >= 40
    listed = api.get(URL, token=agent.token).json()["subscriptions"]
    assert [s["id"] for s in listed] == [body["id"]] and "secret" not in listed[0]
    assert api.get(URL, token=other.token).json() == {"subscriptions": []}
    assert api.client.delete(f"{URL}?id={body['id']}", HTTP_AUTHORIZATION=f"Bearer {other.token}").status_code == 404
    assert api.client.delete(f"{URL}?id={body['id']}", HTTP_AUTHORIZATION=f"Bearer {agent.token}").status_code == 200
    assert api.get(URL, token=agent.token).json() == {"subscriptions": []}
    ops = [e.data["op"] for e in AuditEntry.objects.filter(action="events.subscription_changed").order_by("seq")]
    assert ops == ["subscribe", "unsubscribe"]
    assert body["secret"] not in json.dumps([e.data for e in AuditEntry.objects.all()])


@pytest.mark.parametrize(("body", "field"), [
    ({"callback_url": "http://10.0.0.1/hook"}, "callback_url"),
    ({"callback_url": "https://169.254.169.254/latest/meta-data"}, "callback_url"),
    ({"callback_url": "ftp://93.184.216.34/hook"}, "callback_url"),
    ({"callback_url": "https://user:pw@93.184.216.34/hook"}, "callback_url"),
    ({}, "callback_url"),
    ({"callback_url": "https://93.184.216.34/h", "types": "ONCRMLEADADD"}, "types"),
    ({"callback_url": "https://93.184.216.34/h", "types": ["ON CRM"]}, "types"),
    ({"callback_url": "https://93.184.216.34/h", "portal": "nope"}, "portal"),
    ({"callback_url": "https://93.184.216.34/h", "extra": 1}, "extra"),
])
def test_bad_subscriptions(api, portal, make_agent, body, field):
    agent = make_agent("crm", portal=portal, packs=("core",))
    response = subscribe(api, agent, **body)
    assert response.status_code in (400, 404)
    assert response.json()["error"]["field"] == field
    assert not EventSubscription.objects.exists()


def test_processing_fans_out_to_matching_subscriptions_only(api, portal, make_agent, callback,
                                                            django_capture_on_commit_callbacks, monkeypatch):
    crm = make_agent("crm", portal=portal, packs=("core",))
    chat = make_agent("chat", portal=portal, packs=("comms",))
    all_crm = subscribe(api, crm, callback_url=f"{callback.url}/a").json()["id"]
    deals_only = subscribe(api, crm, callback_url=f"{callback.url}/b", types=["ONCRMDEALADD"]).json()["id"]
    subscribe(api, chat, callback_url=f"{callback.url}/c")
    sent = []
    monkeypatch.setattr(tasks.deliver_event, "delay", lambda *args: sent.append(args))
    lead = new_event(portal, "ONCRMLEADADD", 1)
    deal = new_event(portal, "ONCRMDEALADD", 2)
    with django_capture_on_commit_callbacks(execute=True):
        event_process(event_id=lead.pk)
        event_process(event_id=deal.pk)
    assert sorted(sent) == sorted([(int(all_crm), lead.pk), (int(all_crm), deal.pk), (int(deals_only), deal.pk)])


def test_delivery_is_signed_and_rechecks_visibility(api, portal, make_agent, callback):
    agent = make_agent("crm", portal=portal, packs=("core",))
    created = subscribe(api, agent, callback_url=f"{callback.url}/hook").json()
    event = new_event(portal)
    event_process(event_id=event.pk)
    assert deliver(subscription_id=int(created["id"]), event_id=event.pk) == "sent"
    (seen,) = callback.requests
    assert seen.path == "/hook" and seen.headers["Content-Type"] == "application/json"
    assert verify(created["secret"], seen.body, seen.headers["X-CP-Signature"])
    assert seen.json["subscription"] == int(created["id"])
    assert seen.json["event"]["event"] == "ONCRMLEADADD" and seen.json["event"]["portal"] == "acme"
    callback.respond = lambda seen: (500, {"error": "down"}, {})
    assert deliver(subscription_id=int(created["id"]), event_id=event.pk) == "failed"
    assert EventSubscription.objects.get().last_error == "HTTP 500"
    PackGrant.objects.filter(agent=agent).delete()  # the grant is gone: nothing more is delivered
    assert deliver(subscription_id=int(created["id"]), event_id=event.pk) == "skipped"
    assert len(callback.requests) == 2


def test_failed_deliveries_are_retried_by_the_task(api, portal, make_agent, callback):
    from celery.exceptions import Retry

    agent = make_agent("crm", portal=portal, packs=("core",))
    sub_id = int(subscribe(api, agent, callback_url=f"{callback.url}/hook").json()["id"])
    event = new_event(portal)
    event_process(event_id=event.pk)
    callback.respond = lambda seen: (503, {}, {})
    with pytest.raises(Retry):
        tasks.deliver_event.run(sub_id, event.pk)
    callback.respond = lambda seen: (204, b"", {})
    assert tasks.deliver_event.run(sub_id, event.pk) == "sent"
