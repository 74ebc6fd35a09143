"""The offline-queue worker against a portal with the documented queue semantics (FACTS §11),
over real HTTP (tests/integration/events/stub.py until the sandbox implements them)."""

from urllib.parse import urlencode

import pytest

from apps.audit.models import AuditEntry
from apps.bitrix.client import BitrixClient
from apps.events import handlers, offline
from apps.events.models import EventSettings, InboundEvent
from apps.events.offline import offline_drain
from apps.events.services import OfflineEventsUnavailable, dead_letter_replay, event_process, event_settings_update
from apps.portals.services import portal_upsert
from tests.integration.bitrix.stub import StubServer

from .conftest import APP_TOKEN, MEMBER_ID, make_oauth_portal
from .stub import USER_TOKEN, OfflineQueueStub

pytestmark = pytest.mark.django_db


class WorkerKilled(BaseException):
    """What a SIGKILL looks like from inside: nothing after it runs (not even except Exception)."""


def fill(stub, n, event="ONCRMLEADADD", start=1):
    return [stub.add(event, {"FIELDS": {"ID": start + i}}) for i in range(n)]


def methods_called(stub):
    return [seen.path.rsplit("/", 1)[-1] for seen in stub.requests]


def test_drain_stores_processes_and_clears_exactly_those(queue_stub, offline_portal):
    records = fill(queue_stub, 7)
    result = offline_drain(portal_id=offline_portal.pk)
    assert (result.status, result.fetched, result.stored, result.cleared) == ("ok", 7, 7, 7)
    events = list(InboundEvent.objects.order_by("id"))
    assert [e.offline_id for e in events] == [r["ID"] for r in records]
    assert {(e.status, e.attempts, e.source) for e in events} == {("processed", 1, "offline")}
    assert [e.data for e in events] == [{"FIELDS": {"ID": i}} for i in range(1, 8)]
    assert queue_stub.records() == []
    assert methods_called(queue_stub) == ["event.offline.get", "event.offline.clear", "event.offline.get"]
    get, clear, _ = [s.json for s in queue_stub.requests]
    assert get["clear"] == 0 and "process_id" not in get
    assert clear["process_id"] and sorted(clear["id"], key=int) == [r["ID"] for r in records]
    assert get["auth"] == clear["auth"]  # app auth, the portal's stored token
    row = EventSettings.objects.get(portal=offline_portal)
    assert row.process_id == "" and row.lease_until is None and row.last_error == ""
    assert AuditEntry.objects.filter(action="events.offline_batch").count() == 1


def test_worker_killed_between_get_and_clear_loses_and_duplicates_nothing(queue_stub, offline_portal, monkeypatch):
    fill(queue_stub, 5)
    real_call = BitrixClient.call

    def dying_call(self, method, params=None, **kw):
        if method == "event.offline.clear":
            raise WorkerKilled
        return real_call(self, method, params, **kw)

    monkeypatch.setattr(BitrixClient, "call", dying_call)
    with pytest.raises(WorkerKilled):
        offline_drain(portal_id=offline_portal.pk)
    reserved = EventSettings.objects.get(portal=offline_portal).process_id
    assert reserved  # saved before processing
    assert {r["PROCESS_ID"] for r in queue_stub.records()} == {reserved}
    assert InboundEvent.objects.filter(status="processed").count() == 5
    fill(queue_stub, 2, start=100)  # new changes meanwhile: not part of the reserved batch

    monkeypatch.setattr(BitrixClient, "call", real_call)
    result = offline_drain(portal_id=offline_portal.pk)
    assert result.status == "ok" and result.stored == 2 and result.cleared == 7
    refetch = queue_stub.requests[-5].json  # get(process_id) clear get clear get
    assert refetch["process_id"] == reserved and refetch["clear"] == 0
    events = InboundEvent.objects.all()
    assert events.count() == 7
    assert {(e.status, e.attempts) for e in events} == {("processed", 1)}
    assert len({e.feed_seq for e in events}) == 7
    assert queue_stub.records() == []
    assert EventSettings.objects.get(portal=offline_portal).process_id == ""


def test_worker_killed_right_after_get_refetches_the_batch(queue_stub, offline_portal, monkeypatch):
    fill(queue_stub, 3)
    monkeypatch.setattr(offline, "event_store", lambda **kw: (_ for _ in ()).throw(WorkerKilled()))
    with pytest.raises(WorkerKilled):
        offline_drain(portal_id=offline_portal.pk)
    assert not InboundEvent.objects.exists()
    monkeypatch.undo()
    result = offline_drain(portal_id=offline_portal.pk)
    assert (result.stored, result.cleared) == (3, 3)
    assert queue_stub.records() == []


def test_k_failures_mark_offline_error_and_dead_letter_then_replay(queue_stub, offline_portal, monkeypatch, settings):
    settings.EVENTS_MAX_ATTEMPTS = 3
    fill(queue_stub, 2, event="ONCRMLEADADD")
    (bad,) = fill(queue_stub, 1, event="ONCRMDEALADD", start=50)
    monkeypatch.setitem(handlers.HANDLERS, "ONCRMDEALADD", lambda ev: 1 / 0)
    first = offline_drain(portal_id=offline_portal.pk)
    assert (first.cleared, first.pending, first.dead) == (2, 1, 0)
    assert EventSettings.objects.get(portal=offline_portal).process_id  # kept for the failing one
    offline_drain(portal_id=offline_portal.pk)
    third = offline_drain(portal_id=offline_portal.pk)
    assert (third.dead, third.pending) == (1, 0)
    dead = InboundEvent.objects.get(event="ONCRMDEALADD")
    assert (dead.status, dead.attempts, dead.offline_error_marked) == ("dead", 3, True)
    assert "ZeroDivisionError" in dead.last_error
    error_calls = [s.json for s in queue_stub.requests if s.path.endswith("event.offline.error")]
    assert len(error_calls) == 1 and error_calls[0]["message_id"] == [bad["MESSAGE_ID"]]
    (left,) = queue_stub.records()
    assert left["MESSAGE_ID"] == bad["MESSAGE_ID"] and left["ERROR"] == 1
    listed = BitrixClient(offline_portal).call("event.offline.list", {"filter": {"ERROR": 1}})
    assert [r["MESSAGE_ID"] for r in listed.result] == [bad["MESSAGE_ID"]]
    assert EventSettings.objects.get(portal=offline_portal).process_id == ""
    # the dead letter is in the admin's list; replay processes it once the cause is fixed
    monkeypatch.setitem(handlers.HANDLERS, "ONCRMDEALADD", lambda ev: None)
    dead_letter_replay(event_id=dead.pk)
    assert event_process(event_id=dead.pk) == "processed"
    assert offline_drain(portal_id=offline_portal.pk).fetched == 0  # error-marked records are not re-fetched


def test_a_webhook_portal_gets_a_clear_error(db):
    portal, _ = portal_upsert(slug="hook", base_url="https://hook.bitrix24.com", auth_mode="webhook",
                              secrets={"webhook_code": "abc"}, fields={"webhook_user_id": "1"})
    with pytest.raises(OfflineEventsUnavailable) as info:
        event_settings_update(portal=portal, offline_events=True)
    assert "incoming webhook" in info.value.message
    EventSettings.objects.create(portal=portal, offline_events=True)  # set behind the service's back
    result = offline_drain(portal_id=portal.pk)
    assert result.status == "error" and "app auth" in result.error
    assert "incoming webhook" in EventSettings.objects.get(portal=portal).last_error


def test_a_non_admin_app_user_gets_a_clear_error(queue_stub, db):
    portal = make_oauth_portal(queue_stub.base_url, access_token=USER_TOKEN)
    fill(queue_stub, 2)
    result = offline_drain(portal_id=portal.pk)
    assert result.status == "error"
    assert "ACCESS_DENIED" in result.error and "administrator" in result.error
    assert EventSettings.objects.get(portal=portal).last_error == result.error
    assert not InboundEvent.objects.exists() and len(queue_stub.records()) == 2


def test_disabled_inactive_or_busy_portals_are_skipped(queue_stub, offline_portal):
    fill(queue_stub, 1)
    EventSettings.objects.filter(portal=offline_portal).update(offline_events=False)
    assert offline_drain(portal_id=offline_portal.pk).status == "skipped"
    event_settings_update(portal=offline_portal, offline_events=True)
    assert offline._lease_take(EventSettings.objects.get(portal=offline_portal).pk)
    assert offline_drain(portal_id=offline_portal.pk).status == "busy"
    assert queue_stub.requests == []


def test_auth_connector_is_passed_and_our_own_changes_do_not_come_back(queue_stub, offline_portal):
    event_settings_update(portal=offline_portal, auth_connector="cp_events")
    queue_stub.add("ONCRMLEADADD", {"FIELDS": {"ID": 1}})
    queue_stub.add("ONCRMLEADADD", {"FIELDS": {"ID": 2}}, source="cp_events")  # our own write
    queue_stub.add("ONCRMLEADADD", {"FIELDS": {"ID": 3}}, source="other_app")
    result = offline_drain(portal_id=offline_portal.pk)
    assert result.stored == 2
    assert sorted(e.data["FIELDS"]["ID"] for e in InboundEvent.objects.all()) == [1, 3]
    assert queue_stub.requests[0].json["auth_connector"] == "cp_events"


def test_1000_offline_events_drain_through_a_standard_limit_portal(queue_stub, offline_portal, settings):
    assert (offline_portal.rate_per_second, offline_portal.burst) == (2.0, 50)
    assert (queue_stub.rate, queue_stub.burst) == (2.0, 50)
    settings.EVENTS_OFFLINE_MAX_BATCHES = 100
    fill(queue_stub, 1000)
    client = BitrixClient(offline_portal)
    for _ in range(20):  # other traffic has used part of the portal's bucket already
        client.call("event.get", {})
    result = offline_drain(portal_id=offline_portal.pk)
    assert result.status == "ok", result.error
    assert (result.fetched, result.stored, result.cleared) == (1000, 1000, 1000)
    assert queue_stub.errors_answered["QUERY_LIMIT_EXCEEDED"] == 0
    assert queue_stub.records() == []
    assert InboundEvent.objects.filter(status="processed", source="offline").count() == 1000
    assert queue_stub.calls("event.offline.get") == 21 and queue_stub.calls("event.offline.clear") == 20


def test_onofflineevent_triggers_a_drain_and_its_endpoints_are_ignored(client, queue_stub, offline_portal,
                                                                      django_capture_on_commit_callbacks,
                                                                      celery_drain):
    evil = StubServer().start()
    try:
        fill(queue_stub, 2)
        fields = {"event": "ONOFFLINEEVENT", "ts": "1466439714", "auth[member_id]": MEMBER_ID,
                  "auth[application_token]": APP_TOKEN, "auth[access_token]": "from-the-event",
                  "auth[domain]": evil.url.split("//")[1], "auth[client_endpoint]": f"{evil.url}/rest/",
                  "auth[server_endpoint]": f"{evil.url}/oauth/"}
        with django_capture_on_commit_callbacks(execute=True):
            response = client.generic("POST", "/hooks/bitrix24/events", urlencode(fields),
                                      content_type="application/x-www-form-urlencoded")
        assert response.status_code == 200
        with django_capture_on_commit_callbacks(execute=True):
            ran = celery_drain()  # the portal's run processes ONOFFLINEEVENT, which enqueues the drain
        ran += celery_drain()
        assert [name.rsplit(".", 1)[-1] for name, *_ in ran] == ["process_portal_events", "drain_offline_queue"]
        assert InboundEvent.objects.filter(source="offline", status="processed").count() == 2
        assert evil.requests == []
        assert {s.json["auth"] for s in queue_stub.requests} == {"stub-admin-access-token"}
    finally:
        evil.stop()


def test_stub_semantics_match_facts(queue_stub, offline_portal):
    """The stub itself: clear=1 by default deletes; parallel clear=0 readers get disjoint batches;
    clear by message_id; list reserves nothing."""
    fill(queue_stub, 6)
    c = BitrixClient(offline_portal)
    a = c.call("event.offline.get", {"clear": 0, "limit": 2}).result
    b = c.call("event.offline.get", {"clear": 0, "limit": 2}).result
    assert a["process_id"] != b["process_id"]
    assert not {e["ID"] for e in a["events"]} & {e["ID"] for e in b["events"]}
    listed = c.call("event.offline.list", {})
    assert listed.total == 6 and {r["PROCESS_ID"] for r in listed.result} == {a["process_id"], b["process_id"], ""}
    c.call("event.offline.clear", {"process_id": a["process_id"], "message_id": [a["events"][0]["MESSAGE_ID"]]})
    assert len(queue_stub.records()) == 5
    popped = c.call("event.offline.get", {"limit": 10}).result
    assert popped["process_id"] is None and len(popped["events"]) == 2  # the unreserved ones, deleted
    assert len(queue_stub.records()) == 3
    again = c.call("event.offline.get", {"clear": 0, "process_id": b["process_id"]}).result
    assert [e["ID"] for e in again["events"]] == [e["ID"] for e in b["events"]]


def test_stub_answers_query_limit_exceeded_over_its_bucket(db):
    stub = OfflineQueueStub(rate=0.001, burst=2).start()
    try:
        portal = make_oauth_portal(stub.base_url)
        c = BitrixClient(portal, use_limiter=False)
        c.call("event.get", {})
        c.call("event.get", {})
        with pytest.raises(Exception) as info:
            c.call("event.get", {})
        assert "QUERY_LIMIT_EXCEEDED" in str(info.value)
        assert stub.errors_answered["QUERY_LIMIT_EXCEEDED"] == 1
    finally:
        stub.stop()
