"""Bindings through the transport, and the events admin: settings with the handler URL ready to
paste, bindings list/bind/unbind, dead letters with replay one / replay all."""

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from apps.audit.models import AuditEntry
from apps.events import bindings
from apps.events.models import EventSettings, InboundEvent
from apps.events.services import OfflineEventsUnavailable, event_settings_get
from apps.portals.models import Portal
from apps.portals.services import portal_upsert

pytestmark = pytest.mark.django_db


@pytest.fixture
def public_url(settings):
    settings.EVENTS_PUBLIC_BASE_URL = "https://cp.example.com/"


def test_bind_online_offline_list_unbind(queue_stub, offline_portal, public_url):
    from apps.events.services import event_settings_update

    event_settings_update(portal=offline_portal, auth_connector="cp_events")
    bindings.binding_add(portal=offline_portal, event="oncrmleadadd")
    bindings.binding_add(portal=offline_portal, event="ONCRMDEALADD", offline=True)
    online, offline = [s.json for s in queue_stub.requests]
    assert online["handler"] == "https://cp.example.com/hooks/bitrix24/events" and online["event"] == "ONCRMLEADADD"
    assert "event_type" not in online and online["auth_connector"] == "cp_events"
    assert offline["event_type"] == "offline" and "handler" not in offline and offline["auth_connector"] == "cp_events"
    listed = bindings.bindings_list(portal=offline_portal)
    assert listed == [
        {"event": "ONCRMLEADADD", "handler": "https://cp.example.com/hooks/bitrix24/events", "auth_type": "0",
         "offline": False},
        {"event": "ONCRMDEALADD", "handler": "", "auth_type": "0", "offline": True}]
    assert bindings.binding_remove(portal=offline_portal, event="ONCRMDEALADD", offline=True) == 1
    assert [b["event"] for b in bindings.bindings_list(portal=offline_portal)] == ["ONCRMLEADADD"]
    ops = [e.data["op"] for e in AuditEntry.objects.filter(action="events.binding_changed").order_by("seq")]
    assert ops == ["bind", "bind", "unbind"]


def test_bindings_need_app_auth_and_a_public_url(queue_stub, offline_portal, settings):
    settings.EVENTS_PUBLIC_BASE_URL = ""
    with pytest.raises(Exception, match="EVENTS_PUBLIC_BASE_URL"):
        bindings.binding_add(portal=offline_portal, event="ONCRMLEADADD")
    hook, _ = portal_upsert(slug="hook", base_url="https://hook.bitrix24.com", auth_mode="webhook",
                            secrets={"webhook_code": "abc"}, fields={"webhook_user_id": "1"})
    with pytest.raises(OfflineEventsUnavailable):
        bindings.bindings_list(portal=hook)
    assert queue_stub.requests == []


def test_handler_urls(offline_portal, public_url):
    assert bindings.handler_urls(offline_portal) == (
        "https://cp.example.com/hooks/bitrix24/events", "https://cp.example.com/hooks/bitrix24/events/qportal")


def test_admin_settings_page_and_bindings(admin_client, queue_stub, offline_portal, public_url):
    row = event_settings_get(portal=offline_portal)
    page = admin_client.get(reverse("admin:events_eventsettings_change", args=[row.pk]))
    assert page.status_code == 200
    assert b"https://cp.example.com/hooks/bitrix24/events/qportal" in page.content
    url = reverse("admin:events_eventsettings_bindings", args=[row.pk])
    assert admin_client.post(url, {"do": "bind", "event": "ONCRMLEADADD"}).status_code == 302
    assert admin_client.post(url, {"do": "bind", "event": "ONCRMDEALADD", "offline": "on"}).status_code == 302
    listing = admin_client.get(url)
    assert listing.status_code == 200
    assert b"ONCRMLEADADD" in listing.content and b"ONCRMDEALADD" in listing.content
    assert admin_client.post(url, {"do": "unbind", "event": "ONCRMLEADADD", "offline": "0",
                                   "handler": "https://cp.example.com/hooks/bitrix24/events"}).status_code == 302
    assert [h["event"] for h in queue_stub.handlers] == ["ONCRMDEALADD"]
    bad = admin_client.post(url, {"do": "bind", "event": "NOT VALID"})
    assert bad.status_code == 200 and len(queue_stub.handlers) == 1


def test_admin_bindings_page_shows_a_portal_error(admin_client, db):
    hook, _ = portal_upsert(slug="hook", base_url="https://hook.bitrix24.com", auth_mode="webhook",
                            secrets={"webhook_code": "abc"}, fields={"webhook_user_id": "1"})
    row = event_settings_get(portal=hook)
    page = admin_client.get(reverse("admin:events_eventsettings_bindings", args=[row.pk]))
    assert page.status_code == 200 and b"incoming webhook" in page.content


def test_admin_settings_save_goes_through_the_service(admin_client, queue_stub, offline_portal):
    row = event_settings_get(portal=offline_portal)
    response = admin_client.post(reverse("admin:events_eventsettings_change", args=[row.pk]),
                                 {"offline_events": "", "auth_connector": "cp1"})
    assert response.status_code == 302
    row.refresh_from_db()
    assert (row.offline_events, row.auth_connector) == (False, "cp1")
    assert AuditEntry.objects.filter(action="events.settings_changed").last().data == {
        "offline_events": False, "auth_connector": "cp1"}


def test_admin_refuses_offline_events_for_a_webhook_portal(admin_client, db):
    hook, _ = portal_upsert(slug="hook", base_url="https://hook.bitrix24.com", auth_mode="webhook",
                            secrets={"webhook_code": "abc"}, fields={"webhook_user_id": "1"})
    response = admin_client.post(reverse("admin:events_eventsettings_add"),
                                 {"portal": hook.pk, "offline_events": "on", "auth_connector": ""})
    assert response.status_code == 200 and b"incoming webhook" in response.content
    assert not EventSettings.objects.filter(offline_events=True).exists()


def test_dead_letters_replay_one_and_all(admin_client, offline_portal, django_capture_on_commit_callbacks):
    dead = [InboundEvent.objects.create(portal=offline_portal, event="ONCRMLEADADD", ts=i, payload_hash=str(i),
                                        status="dead", attempts=3, last_error="boom") for i in range(3)]
    InboundEvent.objects.create(portal=offline_portal, event="ONCRMLEADADD", ts=9, payload_hash="9", status="processed")
    changelist = reverse("admin:events_deadletter_changelist")
    page = admin_client.get(changelist)
    assert page.status_code == 200 and page.content.count(b"boom") == 3
    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post(changelist, {"action": "replay_selected", "_selected_action": [dead[0].pk]})
    assert response.status_code == 302 and len(callbacks) == 1
    assert InboundEvent.objects.get(pk=dead[0].pk).status == "received"
    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post(reverse("admin:events_deadletter_replay_all"))
    assert response.status_code == 302 and len(callbacks) == 2
    assert not InboundEvent.objects.filter(status="dead").exists()
    assert AuditEntry.objects.filter(action="events.replayed").count() == 3
    assert admin_client.get(reverse("admin:events_deadletter_replay_all")).status_code == 403


def test_inbound_event_admin_is_read_only(admin_client, offline_portal):
    event = InboundEvent.objects.create(portal=offline_portal, event="ONCRMLEADADD", ts=1, payload_hash="x")
    assert admin_client.get(reverse("admin:events_inboundevent_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:events_inboundevent_change", args=[event.pk])).status_code == 200
    assert admin_client.post(reverse("admin:events_inboundevent_delete", args=[event.pk]), {"post": "yes"}
                             ).status_code == 403


def test_add_portal_offline_events(db):
    call_command("add_portal", "oauthp", "--url", "https://oauthp.bitrix24.com", "--client-id", "c",
                 "--client-secret", "s", "--access-token", "a", "--refresh-token", "r", "--offline-events")
    assert EventSettings.objects.get(portal__slug="oauthp").offline_events is True
    with pytest.raises(CommandError, match="OAuth"):
        call_command("add_portal", "hookp", "--url", "https://hookp.bitrix24.com", "--webhook-user", "1",
                     "--webhook-code", "abc", "--offline-events")
    assert not Portal.objects.filter(slug="hookp").exists()
