"""Processing: once per event, failures counted into dead letters, the app lifecycle events."""

from urllib.parse import urlencode, urlsplit

import pytest

from apps.audit.models import AuditEntry
from apps.audit.services import audit_verify
from apps.events import handlers
from apps.events.models import InboundEvent
from apps.events.services import dead_letter_replay, event_process
from apps.plans import services as plan_services
from apps.plans.models import Plan
from apps.plans.states import transition
from apps.portals.models import Credential, OAuthApp, Portal
from tests.integration.bitrix.stub import StubServer

from .conftest import APP_TOKEN, MEMBER_ID, make_oauth_portal, sample

FORM = "application/x-www-form-urlencoded"


def post(client, fields, url="/hooks/bitrix24/events"):
    return client.generic("POST", url, urlencode(fields), content_type=FORM)


def uninstall_fields(member_id=MEMBER_ID, token=APP_TOKEN):
    """ONAPPUNINSTALL as FACTS §8 documents it: data LANGUAGE_ID, CLEAN; auth without tokens."""
    return {"event": "ONAPPUNINSTALL", "data[LANGUAGE_ID]": "de", "data[CLEAN]": "0", "ts": "1766050000",
            "auth[domain]": "some-domain.bitrix24.com", "auth[server_endpoint]": "https://oauth.bitrix.info/rest/",
            "auth[client_endpoint]": "https://some-domain.bitrix24.com/rest/", "auth[member_id]": member_id,
            "auth[application_token]": token}


@pytest.fixture
def portal(db):
    return make_oauth_portal("https://some-domain.bitrix24.com", slug="acme", offline=False)


def stored(client, fields, capture):
    with capture(execute=True):
        assert post(client, fields).status_code == 200
    return InboundEvent.objects.order_by("-id").first()


@pytest.mark.django_db
def test_processing_happens_once_and_gives_feed_order(client, portal, django_capture_on_commit_callbacks,
                                                      celery_drain):
    lead = dict(sample("event_oncrmleadadd")["form_fields"])
    first = stored(client, lead, django_capture_on_commit_callbacks)
    second = stored(client, {**lead, "ts": "1742807176"}, django_capture_on_commit_callbacks)
    ran = celery_drain()
    # one processing run for the portal, not one task per event; it processes both in order
    assert [(name, args) for name, args, _ in ran] == [("apps.events.tasks.process_portal_events", [portal.pk])]
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.attempts, second.status) == ("processed", 1, "processed")
    assert second.feed_seq == first.feed_seq + 1
    assert event_process(event_id=first.pk) == "processed"  # a redelivered task does nothing
    first.refresh_from_db()
    assert first.attempts == 1 and first.feed_seq < second.feed_seq


@pytest.mark.django_db
def test_k_failures_make_a_dead_letter_and_replay_works(portal, monkeypatch, settings):
    settings.EVENTS_MAX_ATTEMPTS = 3
    event = InboundEvent.objects.create(portal=portal, event="ONCRMLEADADD", ts=1, payload_hash="h", data={})
    calls = []

    def broken(ev):
        calls.append(ev.pk)
        raise RuntimeError("downstream is down")

    monkeypatch.setitem(handlers.HANDLERS, "ONCRMLEADADD", broken)
    assert [event_process(event_id=event.pk) for _ in range(3)] == ["failed", "failed", "dead"]
    assert event_process(event_id=event.pk) == "dead" and len(calls) == 3
    event.refresh_from_db()
    assert event.attempts == 3 and "downstream is down" in event.last_error and event.feed_seq is None
    entry = AuditEntry.objects.get(action="events.dead_lettered")
    assert entry.data["event_id"] == event.pk and entry.data["attempts"] == 3

    monkeypatch.setitem(handlers.HANDLERS, "ONCRMLEADADD", lambda ev: None)
    dead_letter_replay(event_id=event.pk)
    event.refresh_from_db()
    assert (event.status, event.attempts) == ("received", 0)
    assert event_process(event_id=event.pk) == "processed"
    assert AuditEntry.objects.filter(action="events.replayed").count() == 1
    assert audit_verify().ok


@pytest.mark.django_db
def test_online_failures_retry_through_celery(portal, monkeypatch, settings):
    from celery.exceptions import Retry

    from apps.events.tasks import process_event

    settings.EVENTS_MAX_ATTEMPTS = 2
    event = InboundEvent.objects.create(portal=portal, event="ONTASKADD", ts=1, payload_hash="h", data={})
    monkeypatch.setitem(handlers.HANDLERS, "ONTASKADD", lambda ev: 1 / 0)
    with pytest.raises(Retry):
        process_event.run(event.pk)
    assert process_event.run(event.pk) == "dead"


@pytest.mark.django_db
def test_app_uninstall_revokes_deactivates_and_cancels_pending_plans(client, portal, make_agent, celery_drain,
                                                                     django_capture_on_commit_callbacks):
    agent = make_agent("agent-u", portal=portal)
    pending = plan_services.plan_submit(agent=agent, portal=portal, steps=[
        {"name": "a", "method": "crm.lead.add", "params": {"fields": {"TITLE": "x"}}}]).plan
    approved = plan_services.plan_submit(agent=agent, portal=portal, steps=[
        {"name": "a", "method": "crm.lead.get", "params": {"id": 1}}]).plan
    running = plan_services.plan_submit(agent=agent, portal=portal, steps=[
        {"name": "a", "method": "crm.lead.get", "params": {"id": 2}}]).plan
    transition(plan=running, source="approved", target="executing")
    assert (pending.status, approved.status) == ("pending_approval", "approved")
    event = stored(client, uninstall_fields(), django_capture_on_commit_callbacks)
    celery_drain()
    event.refresh_from_db()
    assert event.status == "processed", event.last_error
    portal.refresh_from_db()
    assert portal.is_active is False
    assert Credential.objects.get(portal=portal).status == "revoked"
    statuses = dict(Plan.objects.filter(portal=portal).values_list("pk", "status"))
    assert statuses == {pending.pk: "cancelled", approved.pk: "cancelled", running.pk: "executing"}
    entry = AuditEntry.objects.get(action="events.app_uninstalled")
    assert entry.data == {"event_id": event.pk, "was_active": True, "plans_cancelled": 2}
    assert AuditEntry.objects.filter(action="plan.transition", data__to="cancelled").count() == 2
    assert AuditEntry.objects.filter(action="credential.revoked", data__to="revoked").exists()
    assert audit_verify().ok
    # the portal is gone for events now: a second delivery is refused, nothing stored
    assert post(client, {**uninstall_fields(), "ts": "1766050001"}).status_code == 401


@pytest.mark.django_db
def test_uninstall_with_a_wrong_token_changes_nothing(client, portal):
    assert post(client, uninstall_fields(token="f" * 32)).status_code == 401
    portal.refresh_from_db()
    assert portal.is_active and Credential.objects.get(portal=portal).status == "ok"


@pytest.mark.django_db(transaction=True)
def test_app_install_goes_through_the_install_flow(client, django_capture_on_commit_callbacks, celery_drain):
    stub = StubServer().start()
    try:
        OAuthApp.objects.create(name="app", client_id="local.app.1", client_secret="s", token_url=f"{stub.url}/t/")

        valid = {"s6p6eclrvim6da22ft9ch94ekreb52lv"}

        def respond(seen):
            if seen.path == "/portal/rest/app.info" and (seen.json or {}).get("auth") in valid:
                return 200, {"result": {"ID": 1, "INSTALLED": True}}, {}
            return 401, {"error": "NO_AUTH_FOUND", "error_description": "Wrong authorization data"}, {}

        stub.respond = respond
        fields = dict(sample("event_onappinstall")["form_fields"])
        fields["auth[domain]"] = urlsplit(stub.url).netloc
        fields["auth[client_endpoint]"] = f"{stub.url}/portal/rest/"
        assert post(client, {**fields, "auth[access_token]": "forged"}).status_code == 401
        assert not Portal.objects.exists() and not InboundEvent.objects.exists()
        response = post(client, fields)
        assert response.status_code == 200, response.content
        portal = Portal.objects.get(member_id=MEMBER_ID)
        assert portal.credential.application_token == APP_TOKEN
        assert InboundEvent.objects.get().event == "ONAPPINSTALL"
        # from now on, the stored application_token authenticates the portal's events
        lead = dict(sample("event_oncrmleadadd")["form_fields"])
        assert post(client, lead).status_code == 200
        assert post(client, {**lead, "auth[application_token]": "x" * 32}).status_code == 401
        # uninstalled, then installed again: the portal comes back to life
        stored(client, uninstall_fields(), django_capture_on_commit_callbacks)
        celery_drain()
        portal.refresh_from_db()
        assert not portal.is_active and portal.credential.status == "revoked"
        reinstall = {**fields, "ts": "1766050999", "auth[access_token]": "n3wacc3sst0k3n" * 3,
                     "auth[application_token]": "n3wappt0k3n" * 3}
        valid.add(reinstall["auth[access_token]"])
        assert post(client, reinstall).status_code == 200
        portal.refresh_from_db()
        assert portal.is_active and portal.credential.status == "ok"
    finally:
        stub.stop()


@pytest.mark.django_db
def test_beat_purges_old_processed_events_and_keeps_dead_letters(portal, settings, monkeypatch):
    import datetime as dt

    from django.utils import timezone

    from apps.events import tasks

    settings.EVENTS_RETENTION_DAYS = 30
    old, recent, dead = (InboundEvent.objects.create(portal=portal, event="ONCRMLEADADD", ts=i, payload_hash=str(i))
                         for i in range(3))
    for row in (old, recent):
        event_process(event_id=row.pk)
    InboundEvent.objects.filter(pk=dead.pk).update(status="dead")
    InboundEvent.objects.filter(pk__in=[old.pk, dead.pk]).update(received_at=timezone.now() - dt.timedelta(days=31))
    monkeypatch.setattr(tasks.drain_offline_queue, "delay", lambda *a: None)
    tasks.schedule_offline_drains.run()
    assert sorted(InboundEvent.objects.values_list("pk", flat=True)) == sorted([recent.pk, dead.pk])
    assert AuditEntry.objects.get(action="events.purged").data == {"deleted": 1, "retention_days": 30}
    settings.EVENTS_RETENTION_DAYS = 0
    InboundEvent.objects.filter(pk=recent.pk).update(received_at=timezone.now() - dt.timedelta(days=400))
    tasks.schedule_offline_drains.run()
    assert InboundEvent.objects.filter(pk=recent.pk).exists()
