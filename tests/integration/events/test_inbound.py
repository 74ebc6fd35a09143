"""POST /hooks/bitrix24/events: token and member_id checks, limits, one row per event, processing
enqueued on commit, nothing taken from the event's auth to reach the portal."""

from urllib.parse import urlencode

import pytest

from apps.events.models import InboundEvent, ProcessingWake
from apps.events.tasks import process_portal_events
from apps.portals.crypto import generate_key, secrets_rotate
from apps.portals.services import portal_upsert

from .conftest import APP_TOKEN, MEMBER_ID, make_oauth_portal, sample

pytestmark = pytest.mark.django_db

URL = "/hooks/bitrix24/events"
FORM = "application/x-www-form-urlencoded"


def post(client, body, url=URL, **extra):
    return client.generic("POST", url, body, content_type=FORM, **extra)


@pytest.fixture
def portal_a(db):
    return make_oauth_portal("https://a.bitrix24.com", slug="a", offline=False)


@pytest.fixture
def portal_b(db):
    return make_oauth_portal("https://b.bitrix24.com", slug="b", member_id="b" * 32, app_token="token-of-b" * 3,
                             offline=False)


def lead_body(**override):
    fields = dict(sample("event_oncrmleadadd")["form_fields"])
    fields.update(override)
    return urlencode(fields)


def test_a_valid_event_is_stored_and_processed_on_commit(client, portal_a, django_capture_on_commit_callbacks,
                                                         monkeypatch):
    sent = []
    monkeypatch.setattr(process_portal_events, "delay", lambda *a, **k: sent.append(a))
    with django_capture_on_commit_callbacks() as callbacks:
        response = post(client, lead_body())
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "stored", "event": "ONCRMLEADADD"}
    (event,) = InboundEvent.objects.all()
    assert (event.portal, event.event, event.ts, event.data) == (portal_a, "ONCRMLEADADD", 1742807175,
                                                                 {"FIELDS": {"ID": "1000983"}})
    assert event.event_handler_id == "707" and event.status == "received"
    assert (event.source, event.additional, event.attempts, event.feed_seq) == ("online", {}, 0, None)
    assert len(callbacks) == 1 and sent == []  # nothing is queued before the commit
    assert not ProcessingWake.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        callbacks[0]()  # the commit: the portal's processing is woken, a run queued once more on commit
    assert sent == [(portal_a.pk,)]
    assert ProcessingWake.objects.get(portal=portal_a).requested_at is not None


def test_five_deliveries_store_one_event(client, portal_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        answers = [post(client, lead_body()).json()["status"] for _ in range(5)]
    assert answers == ["stored"] + ["duplicate"] * 4
    assert InboundEvent.objects.count() == 1
    assert len(callbacks) == 1  # processing enqueued once
    # another handler id, other tokens: the same event still
    post(client, lead_body(**{"event_handler_id": "999", "auth[access_token]": "x"}))
    assert InboundEvent.objects.count() == 1
    post(client, lead_body(ts="1742807176"))
    assert InboundEvent.objects.count() == 2


@pytest.mark.parametrize("override", [
    {"auth[application_token]": "wrong-token-000000000000000000000"},
    {"auth[application_token]": ""},
    {"auth[application_token]": APP_TOKEN[:-1]},
    {"auth[member_id]": "0" * 32},
    {"auth[member_id]": ""},
])
def test_wrong_or_missing_token_is_401_and_stores_nothing(client, portal_a, override):
    response = post(client, lead_body(**override))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert not InboundEvent.objects.exists()


def test_no_token_field_at_all(client, portal_a):
    fields = dict(sample("event_oncrmleadadd")["form_fields"])
    del fields["auth[application_token]"]
    assert post(client, urlencode(fields)).status_code == 401
    assert not InboundEvent.objects.exists()


def test_token_of_portal_a_with_member_id_of_b_is_401(client, portal_a, portal_b):
    assert post(client, lead_body(**{"auth[member_id]": portal_b.member_id})).status_code == 401
    assert post(client, lead_body(**{"auth[application_token]": "token-of-b" * 3})).status_code == 401
    assert not InboundEvent.objects.exists()
    ok = post(client, lead_body(**{"auth[member_id]": portal_b.member_id, "auth[application_token]": "token-of-b" * 3}))
    assert ok.status_code == 200
    assert InboundEvent.objects.get().portal == portal_b


def test_inactive_portal_is_401(client, portal_a):
    portal_a.is_active = False
    portal_a.save()
    assert post(client, lead_body()).status_code == 401
    assert not InboundEvent.objects.exists()


def test_outgoing_webhook_handler_url_per_portal(client, db):
    portal, _ = portal_upsert(slug="hooked", base_url="https://hooked.bitrix24.com", auth_mode="webhook",
                              secrets={"webhook_code": "abc", "application_token": "jvh9y1ulvt2m6k5or90v9mg8nn32ozas"},
                              fields={"webhook_user_id": "1"})
    body = sample("event_oncrmdealadd_outgoing_webhook")["body"]
    assert post(client, body).status_code == 401  # the portal has no member_id registered
    response = post(client, body, url="/hooks/bitrix24/events/hooked")
    assert response.status_code == 200, response.content
    assert InboundEvent.objects.get().portal == portal
    assert post(client, body, url="/hooks/bitrix24/events/other").status_code == 401
    portal.member_id = "ffffffffffffffffffffffffffffffff"
    portal.save()
    again = body.replace("7405", "7406")
    assert post(client, again, url="/hooks/bitrix24/events/hooked").status_code == 401  # member_id mismatch


def test_body_over_one_mib_is_413_before_parsing(client, portal_a, monkeypatch):
    import apps.events.views as views

    monkeypatch.setattr(views, "form_pairs", lambda *a, **k: pytest.fail("parsed"))
    big = lead_body() + "&data[PAD]=" + "x" * (1024 * 1024)
    response = post(client, big)
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
    assert not InboundEvent.objects.exists()


def test_just_under_the_size_limit_is_accepted(client, portal_a):
    base = lead_body() + "&data[PAD]="
    body = base + "x" * (1024 * 1024 - len(base))
    assert len(body) == 1024 * 1024
    assert post(client, body).status_code == 200


def test_more_than_1000_fields_is_400(client, portal_a):
    body = lead_body() + "".join(f"&data[F{i}]=1" for i in range(1000))
    response = post(client, body)
    assert response.status_code == 400 and response.json()["error"]["field"] == "body"
    assert not InboundEvent.objects.exists()


@pytest.mark.parametrize(("body", "content_type", "status"), [
    ("event=ONCRMLEADADD", "application/json", 415),
    ("event=&ts=1", FORM, 400),
    ("ts=1", FORM, 400),
    ("event=ONCRMLEADADD&ts=tomorrow", FORM, 400),
    ("event=ONCRMLEADADD&data=x&data[a]=y", FORM, 400),
    (b"event=\xff", FORM, 400),
])
def test_bad_input_is_a_json_4xx(client, portal_a, body, content_type, status):
    response = client.generic("POST", URL, body, content_type=content_type)
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert "error" in response.json()


def test_get_is_405_and_unknown_hooks_are_json_404(client):
    assert client.get(URL).status_code == 405
    for path in ("/hooks/bitrix24/events/a.b", "/hooks/bitrix24/events/a/b", "/hooks/bitrix24/other"):
        response = client.post(path, "event=X", content_type=FORM)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_the_events_domain_and_endpoints_are_not_stored(client, portal_a):
    evil = lead_body(**{"auth[domain]": "evil.example", "auth[client_endpoint]": "https://evil.example/rest/",
                        "auth[server_endpoint]": "https://evil.example/oauth/"})
    assert post(client, evil).status_code == 200
    event = InboundEvent.objects.get()
    assert "evil" not in str(event.data) and "evil" not in str(event.additional)
    portal_a.refresh_from_db()
    assert portal_a.base_url == "https://a.bitrix24.com"
    assert portal_a.credential.client_endpoint == ""


def test_member_id_of_the_sample_matches_the_fixture():
    assert dict(sample("event_oncrmleadadd")["form_fields"])["auth[member_id]"] == MEMBER_ID


def test_a_changed_or_revoked_token_is_seen_at_once(client, portal_a, settings):
    """The decrypted token is cached by ciphertext: a new token, re-encrypted keys and a
    deactivated portal all take effect with the next delivery."""
    new = {"auth[application_token]": "a-new-application-token-0000000"}
    assert post(client, lead_body()).status_code == 200  # the old token, now cached
    credential = portal_a.credential
    credential.application_token = new["auth[application_token]"]
    credential.save()
    assert post(client, lead_body(ts="2")).status_code == 401
    assert post(client, lead_body(ts="3", **new)).status_code == 200
    settings.FIELD_ENCRYPTION_KEYS = [generate_key(), *settings.FIELD_ENCRYPTION_KEYS]
    assert secrets_rotate().rotated
    assert post(client, lead_body(ts="4", **new)).status_code == 200
    settings.FIELD_ENCRYPTION_KEYS = settings.FIELD_ENCRYPTION_KEYS[:1]  # the old key dropped after rotation
    assert post(client, lead_body(ts="5", **new)).status_code == 200
    portal_a.is_active = False
    portal_a.save()
    assert post(client, lead_body(ts="6", **new)).status_code == 401
    assert sorted(InboundEvent.objects.values_list("ts", flat=True)) == [3, 4, 5, 1742807175]


def test_hot_path_prepares_statements_unless_the_database_options_say_otherwise(monkeypatch):
    """An operator behind a transaction-mode pooler sets OPTIONS prepare_threshold (None):
    the hook then binds on the server without preparing."""
    from django.db import connection

    from apps.core.sql import prepares

    monkeypatch.setitem(connection.settings_dict, "OPTIONS", {})
    assert prepares(connection) is True
    monkeypatch.setitem(connection.settings_dict, "OPTIONS", {"prepare_threshold": None})
    assert prepares(connection) is False
