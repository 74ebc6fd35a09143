"""The portal admin's secret fields: write-only (never rendered back), blank keeps what is stored,
a new value replaces only its own field and is audited by name, never by value; the portal URL
must be https (http only to loopback, and only with PORTAL_ALLOW_LOOPBACK_HTTP on)."""

import pytest

from apps.audit.models import AuditEntry
from apps.portals.models import Credential, Portal

from .test_admin import PORTALS, form_data

pytestmark = pytest.mark.django_db
STORED = {"webhook_code": "hook-secret-0123456789", "application_token": "app-token-secret"}


def last_pk():
    entry = AuditEntry.objects.order_by("-pk").first()
    return entry.pk if entry else 0


def test_secrets_are_never_rendered_back(admin_client, portal):
    page = admin_client.get(f"{PORTALS}{portal.pk}/change/").content.decode()
    assert page.count('type="password"') >= 5
    for value in STORED.values():
        assert value not in page
    assert "webhook_code, application_token" in page  # which secrets are stored, by name


def test_blank_secret_fields_keep_every_stored_value(admin_client, portal):
    mark = last_pk()
    assert admin_client.post(f"{PORTALS}{portal.pk}/change/", form_data(portal, burst="70")).status_code == 302
    credential = Credential.objects.get(portal=portal)
    assert {k: getattr(credential, k) for k in STORED} == STORED
    assert Portal.objects.get(pk=portal.pk).burst == 70
    entries = list(AuditEntry.objects.filter(pk__gt=mark))
    assert [e.action for e in entries] == ["portal.changed"]
    assert "secrets_set" not in entries[0].data or entries[0].data["secrets_set"] == []


def test_a_new_secret_replaces_only_its_field_and_is_audited_by_name(admin_client, admin_user, portal):
    mark = last_pk()
    response = admin_client.post(f"{PORTALS}{portal.pk}/change/",
                                 form_data(portal, **{"credential-0-application_token": "fresh-app-token-99"}))
    assert response.status_code == 302
    credential = Credential.objects.get(portal=portal)
    assert credential.application_token == "fresh-app-token-99"
    assert credential.webhook_code == STORED["webhook_code"]
    entries = list(AuditEntry.objects.filter(pk__gt=mark))
    assert [e.action for e in entries] == ["portal.changed"]
    assert entries[0].actor == admin_user.username and entries[0].data["secrets_set"] == ["application_token"]
    assert "fresh-app-token-99" not in str(entries[0].data)


@pytest.mark.parametrize("url, loopback_allowed, accepted", [
    ("https://acme.bitrix24.com", False, True),
    ("http://acme.bitrix24.com", True, False),
    ("http://127.0.0.1:8000/sandbox/x", True, True),
    ("http://127.0.0.1:8000/sandbox/x", False, False),
])
def test_the_portal_url_must_be_https(admin_client, settings, url, loopback_allowed, accepted):
    settings.PORTAL_ALLOW_LOOPBACK_HTTP = loopback_allowed
    response = admin_client.post(f"{PORTALS}add/", form_data(base_url=url, **{"credential-0-webhook_code": "c0de"}))
    if accepted:
        assert response.status_code == 302 and Portal.objects.get(slug="acme").base_url == url
    else:
        assert response.status_code == 200 and "Bitrix24 requires HTTPS" in response.content.decode()
        assert not Portal.objects.exists() and not AuditEntry.objects.exists()
