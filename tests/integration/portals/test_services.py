"""Portal, credential, approver-list, OAuth-app and OAuth-install services: each writes one audit
entry, in the same transaction as its change (a failure right after the entry rolls back both)."""

import pytest

from apps.audit.models import AuditEntry
from apps.core.exceptions import Conflict, InvalidRequest
from apps.portals import services
from apps.portals.models import Credential, CredentialStatus, OAuthApp, Portal
from apps.portals.services import (
    credential_set_status,
    oauth_app_upsert,
    portal_approvers_add,
    portal_approvers_remove,
    portal_install_oauth,
    portal_set_approvers,
    portal_upsert,
)
from tests.integration.audit_helpers import failing_after_audit, last_seq, new_entries

pytestmark = pytest.mark.django_db

HOOK = {"slug": "acme", "base_url": "https://acme.bitrix24.com", "auth_mode": "webhook"}


def test_portal_upsert_writes_one_entry_naming_secrets_not_values(admin_user):
    seq = last_seq()
    portal, created = portal_upsert(**HOOK, secrets={"webhook_code": "hook-canary-123"},
                                    fields={"webhook_user_id": "1"}, acting_user=admin_user)
    assert created and portal.credential.webhook_code == "hook-canary-123"
    [entry] = new_entries(seq)
    assert entry.action == "portal.changed" and entry.actor == admin_user.username and entry.portal == "acme"
    assert entry.data["secrets_set"] == ["webhook_code"] and entry.data["created"] is True
    assert "hook-canary-123" not in str(entry.data)


def test_portal_upsert_rolls_back_with_its_audit_entry():
    with failing_after_audit(services):
        portal_upsert(**HOOK, secrets={"webhook_code": "c"}, fields={"webhook_user_id": "1"})
    assert not Portal.objects.filter(slug="acme").exists() and not Credential.objects.exists()


def test_new_secret_resets_a_broken_credential_and_a_rate_change_does_not(portal):
    credential_set_status(portal=portal, status="broken", code="expired_token", detail="The token expired")
    portal_upsert(slug=portal.slug, base_url=portal.base_url, auth_mode="webhook", rate_per_second=3)
    assert Credential.objects.get(portal=portal).status == "broken"  # nothing about the credential changed
    seq = last_seq()
    portal_upsert(slug=portal.slug, base_url=portal.base_url, auth_mode="webhook", secrets={"webhook_code": "new"})
    credential = Credential.objects.get(portal=portal)
    assert (credential.status, credential.status_detail, credential.webhook_code) == ("ok", "", "new")
    assert [e.action for e in new_entries(seq)] == ["portal.changed", "credential.restored"]


@pytest.mark.parametrize("bad, field", [
    ({"slug": "no spaces"}, "slug"),
    ({"base_url": "https://acme.bitrix24.com/rest/1/abc/"}, "url"),
    ({"rate_per_second": 0}, "rps"),
    ({"name": "x" * 201}, "name"),
    ({"secrets": {"status": "ok"}}, "status"),
    ({"fields": {"status": "ok"}}, "status"),
])
def test_portal_upsert_refuses_bad_input_with_a_field(bad, field):
    with pytest.raises(InvalidRequest) as caught:
        portal_upsert(**{**HOOK, **bad})
    assert caught.value.extra["field"] == field
    assert not Portal.objects.exists() and not AuditEntry.objects.exists()


def test_credential_set_status_records_a_breakage_once(portal):
    seq = last_seq()
    assert credential_set_status(portal=portal, status="broken", code="expired_token", detail="The token expired")
    assert not credential_set_status(portal=portal.pk, status="broken", code="expired_token", detail="again")
    credential = Credential.objects.get(portal=portal)
    assert (credential.status, credential.status_detail) == ("broken", "expired_token: The token expired")
    [entry] = new_entries(seq)
    assert entry.action == "credential.broken" and entry.portal == portal.slug and entry.actor_type == "system"
    assert entry.data["from"] == "ok" and entry.data["to"] == "broken" and entry.data["detail"] == "The token expired"


def test_credential_set_status_revoked_then_ok(portal, admin_user):
    seq = last_seq()
    assert credential_set_status(portal=portal, status=CredentialStatus.REVOKED, detail="ONAPPUNINSTALL")
    assert credential_set_status(portal=portal, status="ok", acting_user=admin_user)
    assert [e.action for e in new_entries(seq)] == ["credential.revoked", "credential.restored"]
    credential = Credential.objects.get(portal=portal)
    assert (credential.status, credential.status_detail) == ("ok", "")


def test_credential_set_status_rolls_back_with_its_audit_entry(portal):
    with failing_after_audit(services):
        credential_set_status(portal=portal, status="broken", code="invalid_token")
    assert Credential.objects.get(portal=portal).status == "ok"


def test_credential_set_status_refuses_an_unknown_status(portal):
    with pytest.raises(InvalidRequest):
        credential_set_status(portal=portal, status="sleepy")


def test_approver_services_audit_what_changed(portal, django_user_model, admin_user):
    alice = django_user_model.objects.create_user("alice")
    bob = django_user_model.objects.create_user("bob")
    seq = last_seq()
    assert portal_approvers_add(portal=portal, users=[alice, bob], acting_user=admin_user) == [alice, bob]
    assert portal_approvers_add(portal=portal, users=[alice]) == []  # already there: no entry
    assert portal_approvers_remove(portal=portal, users=[bob]) == [bob]
    added, removed = portal_set_approvers(portal=portal, users=[bob])
    assert (added, removed) == ([bob], [alice])
    assert list(portal.approvers.all()) == [bob]
    entries = new_entries(seq)
    assert [e.action for e in entries] == ["portal.approvers_changed"] * 3
    assert entries[0].data == {"added": ["alice", "bob"], "removed": [], "approvers": ["alice", "bob"]}
    assert entries[0].actor == admin_user.username
    assert entries[2].data == {"added": ["bob"], "removed": ["alice"], "approvers": ["bob"]}


def test_approver_change_rolls_back_with_its_audit_entry(portal, django_user_model):
    alice = django_user_model.objects.create_user("alice")
    with failing_after_audit(services):
        portal_set_approvers(portal=portal, users=[alice])
    assert not portal.approvers.exists()


def test_portal_upsert_sets_approvers_through_the_approver_service(django_user_model):
    alice = django_user_model.objects.create_user("alice")
    seq = last_seq()
    portal, _ = portal_upsert(**HOOK, approvers=[alice])
    assert list(portal.approvers.all()) == [alice]
    assert [e.action for e in new_entries(seq)] == ["portal.changed", "portal.approvers_changed"]


def test_oauth_app_upsert_keeps_a_blank_secret_and_never_logs_it(admin_user):
    seq = last_seq()
    app, created = oauth_app_upsert(client_id="local.1", name="App", client_secret="app-secret-canary",
                                    token_url="https://oauth.bitrix24.tech/oauth/token/", acting_user=admin_user)
    assert created
    oauth_app_upsert(client_id="local.1", name="App 2", client_secret="")
    app.refresh_from_db()
    assert (app.name, app.client_secret) == ("App 2", "app-secret-canary")
    entries = new_entries(seq)
    assert [e.action for e in entries] == ["oauth_app.changed"] * 2
    assert entries[1].data["changed"] == ["name"] and "app-secret-canary" not in str([e.data for e in entries])


def test_oauth_app_upsert_rolls_back_with_its_audit_entry():
    with failing_after_audit(services):
        oauth_app_upsert(client_id="local.1", name="App", client_secret="s")
    assert not OAuthApp.objects.exists()


def install(app, **overrides):
    values = dict(app=app, member_id="m-1", domain="acme.bitrix24.com", endpoint="https://acme.bitrix24.com/rest/",
                  access_token="at-canary", refresh_token="rt-canary", expires_at=None, scope="crm",
                  application_token="apptok-canary", via="install")
    return portal_install_oauth(**{**values, **overrides})


@pytest.fixture
def app(db):
    return OAuthApp.objects.create(name="App", client_id="local.1", client_secret="s")


def test_install_restores_a_revoked_credential(app):
    portal = install(app)
    credential_set_status(portal=portal, status="revoked", detail="app uninstalled")
    seq = last_seq()
    again = install(app, access_token="at-2")
    assert again.pk == portal.pk
    credential = Credential.objects.get(portal=portal)
    assert (credential.status, credential.access_token) == ("ok", "at-2")
    entries = new_entries(seq)
    assert [e.action for e in entries] == ["portal.changed", "credential.restored"]
    assert entries[0].data["secrets_set"] == ["access_token", "application_token", "refresh_token"]
    assert "canary" not in str(entries[0].data)


def test_install_rolls_back_with_its_audit_entry(app):
    with failing_after_audit(services):
        install(app)
    assert not Portal.objects.exists() and not Credential.objects.exists()


def test_portals_delete_removes_grants_through_their_service(portal, make_agent, admin_user):
    make_agent("bot", portal=portal, packs=("core", "comms"))
    seq = last_seq()
    assert services.portals_delete(portals=[portal], acting_user=admin_user) == 1
    assert not Portal.objects.filter(slug="acme").exists() and not Credential.objects.exists()
    assert [e.action for e in new_entries(seq)] == ["grant.removed", "grant.removed", "portal.deleted"]


def test_portals_delete_rolls_back_with_its_audit_entries(portal, make_agent):
    make_agent("bot", portal=portal, packs=("core",))
    with failing_after_audit(services, after=1):
        services.portals_delete(portals=[portal])
    assert Portal.objects.filter(slug="acme", grants__pack="core").exists()


def test_a_portal_with_plans_is_not_deleted(portal, agent):
    from apps.plans.services import plan_submit

    plan_submit(agent=agent, portal=portal, steps=[{"name": "c", "method": "crm.lead.add", "params": {}}])
    with pytest.raises(Conflict, match="has plans"):
        services.portals_delete(portals=[portal])
    assert Portal.objects.filter(pk=portal.pk).exists()


def test_oauth_apps_delete_refuses_an_app_in_use(app):
    install(app)
    with pytest.raises(Conflict, match="used by installed portals"):
        services.oauth_apps_delete(apps=[app])
    Credential.objects.all().delete()
    assert services.oauth_apps_delete(apps=[app]) == 1
    assert AuditEntry.objects.filter(action="oauth_app.deleted", data__client_id="local.1").count() == 1


@pytest.mark.parametrize("change", ["add", "remove"])
def test_approver_add_and_remove_roll_back_with_their_audit_entry(portal, django_user_model, change):
    alice = django_user_model.objects.create_user("alice")
    if change == "remove":
        portal_approvers_add(portal=portal, users=[alice])
    with failing_after_audit(services):
        (portal_approvers_add if change == "add" else portal_approvers_remove)(portal=portal, users=[alice])
    assert portal.approvers.filter(pk=alice.pk).exists() == (change == "remove")


def test_oauth_apps_delete_rolls_back_with_its_audit_entry(app):
    with failing_after_audit(services):
        services.oauth_apps_delete(apps=[app])
    assert OAuthApp.objects.filter(pk=app.pk).exists()


def test_portal_upsert_refuses_a_member_id_of_another_portal(portal):
    portal_upsert(slug="other", base_url="https://other.bitrix24.com", auth_mode="oauth", member_id="m-1")
    with pytest.raises(InvalidRequest, match="Another portal has this member_id") as caught:
        portal_upsert(slug=portal.slug, base_url=portal.base_url, auth_mode="webhook", member_id="m-1")
    assert caught.value.extra["field"] == "member_id"
    assert Portal.objects.get(pk=portal.pk).member_id == ""
