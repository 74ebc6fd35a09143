"""The portal and OAuth-app admins are adapters over the portal services: same writes, same audit."""

import pytest

from apps.audit.models import AuditEntry
from apps.portals.models import Credential, OAuthApp, Portal
from apps.portals.services import credential_set_status
from tests.integration.audit_helpers import last_seq, new_entries

pytestmark = pytest.mark.django_db
PORTALS = "/admin/portals/portal/"


def form_data(portal=None, approvers=(), **overrides):
    credential = Credential.objects.filter(portal=portal).first() if portal else None
    data = {
        "slug": "acme", "name": "ACME", "base_url": "https://acme.bitrix24.com", "auth_mode": "webhook",
        "member_id": "", "rate_per_second": "2.0", "burst": "50", "is_active": "on",
        "approvers": [u.pk for u in approvers],
        "credential-TOTAL_FORMS": "1", "credential-INITIAL_FORMS": "1" if credential else "0",
        "credential-MIN_NUM_FORMS": "0", "credential-MAX_NUM_FORMS": "1",
        "credential-0-webhook_user_id": "1", "credential-0-webhook_code": "",
        "credential-0-oauth_app": "", "credential-0-client_id": "", "credential-0-client_secret": "",
        "credential-0-oauth_server_url": "", "credential-0-access_token": "", "credential-0-refresh_token": "",
        "credential-0-access_expires_at_0": "", "credential-0-access_expires_at_1": "",
        "credential-0-client_endpoint": "", "credential-0-application_token": "",
    }
    if credential:
        data.update({"credential-0-id": credential.pk, "credential-0-portal": portal.pk})
    data.update(overrides)
    return data


def test_add_portal_in_the_admin_goes_through_the_service(admin_client, admin_user, make_approver):
    alice = make_approver("alice")
    seq = last_seq()
    response = admin_client.post(f"{PORTALS}add/", form_data(approvers=[alice], **{
        "credential-0-webhook_code": "admin-code-canary"}))
    assert response.status_code == 302, response.content.decode()[:2000]
    portal = Portal.objects.get(slug="acme")
    assert portal.credential.webhook_code == "admin-code-canary" and list(portal.approvers.all()) == [alice]
    entries = new_entries(seq)
    assert [e.action for e in entries] == ["portal.changed", "portal.approvers_changed"]
    assert all(e.actor == admin_user.username for e in entries)
    assert entries[0].data["secrets_set"] == ["webhook_code"]
    assert "admin-code-canary" not in str([e.data for e in entries])


def test_replacing_a_broken_webhook_code_in_the_admin_resets_the_status(admin_client, portal):
    credential_set_status(portal=portal, status="broken", code="invalid_credentials", detail="wrong code")
    url = f"{PORTALS}{portal.pk}/change/"
    # An unrelated change keeps the breakage visible...
    assert admin_client.post(url, form_data(portal, burst="60")).status_code == 302
    credential = Credential.objects.get(portal=portal)
    assert credential.status == "broken" and credential.webhook_code == "hook-secret-0123456789"
    # ...a new code is a new credential: OK again, with an audit entry saying so.
    seq = last_seq()
    assert admin_client.post(url, form_data(portal, **{"credential-0-webhook_code": "fresh"})).status_code == 302
    credential.refresh_from_db()
    assert (credential.status, credential.status_detail, credential.webhook_code) == ("ok", "", "fresh")
    assert [e.action for e in new_entries(seq)] == ["portal.changed", "credential.restored"]


def test_the_slug_cannot_be_renamed_in_the_admin(admin_client, portal):
    admin_client.post(f"{PORTALS}{portal.pk}/change/", form_data(portal, slug="renamed"))
    assert Portal.objects.filter(pk=portal.pk, slug="acme").exists() and not Portal.objects.filter(slug="renamed")


@pytest.mark.parametrize("field, value, message", [
    ("rate_per_second", "0", "rate is a positive number"),
    ("burst", "0", "burst is a positive whole number"),
    ("base_url", "https://acme.bitrix24.com/rest/1/abc/", "That is a webhook or REST URL"),
    ("slug", "not a slug", "slug"),
])
def test_admin_form_refuses_what_the_service_refuses(admin_client, field, value, message):
    response = admin_client.post(f"{PORTALS}add/", form_data(**{field: value}))
    assert response.status_code == 200 and message in response.content.decode()
    assert not Portal.objects.exists() and not AuditEntry.objects.exists()


def test_oauth_app_admin_goes_through_the_service(admin_client):
    data = {"name": "App", "client_id": "local.1", "client_secret": "app-secret-canary", "scopes": "crm",
            "token_url": "https://oauth.bitrix24.tech/oauth/token/"}
    assert admin_client.post("/admin/portals/oauthapp/add/", data).status_code == 302
    app = OAuthApp.objects.get(client_id="local.1")
    response = admin_client.post(f"/admin/portals/oauthapp/{app.pk}/change/", {**data, "name": "App 2",
                                                                                "client_secret": ""})
    assert response.status_code == 302
    app.refresh_from_db()
    assert (app.name, app.client_secret) == ("App 2", "app-secret-canary")
    entries = AuditEntry.objects.filter(action="oauth_app.changed").order_by("seq")
    # token_url was the default: not a change
    assert [e.data["changed"] for e in entries] == [["client_secret", "name", "scopes"], ["name"]]


def test_deleting_a_portal_in_the_admin_goes_through_the_service(admin_client, portal, make_agent):
    make_agent("bot", portal=portal)
    response = admin_client.post(PORTALS, {"action": "delete_selected", "post": "yes", "_selected_action": [portal.pk]})
    assert response.status_code == 302 and not Portal.objects.exists()
    actions = list(AuditEntry.objects.order_by("seq").values_list("action", "actor"))[-2:]
    assert actions == [("grant.removed", "admin"), ("portal.deleted", "admin")]
