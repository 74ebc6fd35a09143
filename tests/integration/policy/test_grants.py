"""`grant_upsert` and `grants_remove` are the only writers of PackGrant; the admin calls them."""

import pytest

from apps.audit.models import AuditEntry
from apps.core.exceptions import InvalidRequest
from apps.policy import services
from apps.policy.models import PackGrant
from apps.policy.services import grant_remove, grant_upsert, grants_remove
from tests.integration.audit_helpers import failing_after_audit, last_seq, new_entries

pytestmark = pytest.mark.django_db
GRANTS = "/admin/policy/packgrant/"


@pytest.fixture
def bot(make_agent):
    return make_agent("bot")


def test_grant_upsert_creates_then_updates_with_one_entry_each(bot, portal, admin_user, django_user_model):
    seq = last_seq()
    grant = grant_upsert(agent=bot, portal=portal, pack="core", acting_user=admin_user)
    other = django_user_model.objects.create_user("other")
    again = grant_upsert(agent=bot, portal=portal, pack="core", write="approve2", acting_user=other)
    assert again.pk == grant.pk and again.write_policy == "approve2"
    assert again.created_by == admin_user  # who created it, not who changed it last
    entries = new_entries(seq)
    assert [(e.action, e.data["created"], e.actor) for e in entries] == [
        ("grant.changed", True, admin_user.username), ("grant.changed", False, "other")]


def test_grant_upsert_rolls_back_with_its_audit_entry(bot, portal):
    with failing_after_audit(services):
        grant_upsert(agent=bot, portal=portal, pack="core")
    assert not PackGrant.objects.filter(agent=bot).exists()


def test_grant_upsert_refuses_unknown_pack_and_policy(bot, portal):
    with pytest.raises(InvalidRequest, match="Unknown pack"):
        grant_upsert(agent=bot, portal=portal, pack="madeup")
    with pytest.raises(InvalidRequest, match="read is one of"):
        grant_upsert(agent=bot, portal=portal, pack="core", read="sometimes")
    assert not PackGrant.objects.filter(agent=bot).exists()


def test_grant_remove_writes_one_entry(bot, portal):
    grant = grant_upsert(agent=bot, portal=portal, pack="core")
    seq = last_seq()
    grant_remove(grant=grant)
    [entry] = new_entries(seq)
    assert entry.action == "grant.removed" and entry.data == {"agent": "bot", "pack": "core"}
    assert not PackGrant.objects.filter(pk=grant.pk).exists()


def test_a_bulk_removal_is_one_transaction_with_its_entries(bot, portal):
    grants = [grant_upsert(agent=bot, portal=portal, pack=p) for p in ("core", "comms", "diagnostics")]
    with failing_after_audit(services, after=3):  # the last grant fails: none is removed
        grants_remove(grants=grants)
    assert PackGrant.objects.filter(agent=bot).count() == 3


def form(agent, portal, **overrides):
    return {"agent": agent.pk, "portal": portal.pk, "pack": "core", "read_policy": "auto",
            "write_policy": "approve", "destructive_policy": "approve2", "expires_at_0": "", "expires_at_1": "",
            **overrides}


def test_admin_add_and_change_go_through_the_service(admin_client, admin_user, bot, portal):
    seq = last_seq()
    assert admin_client.post(f"{GRANTS}add/", form(bot, portal)).status_code == 302
    grant = PackGrant.objects.get(agent=bot, pack="core")
    assert grant.created_by == admin_user
    # agent, portal and pack are the grant's identity: read-only on change
    response = admin_client.post(f"{GRANTS}{grant.pk}/change/", form(bot, portal, pack="comms", write_policy="deny"))
    assert response.status_code == 302
    grant.refresh_from_db()
    assert (grant.pack, grant.write_policy) == ("core", "deny")
    entries = new_entries(seq)
    assert [(e.action, e.actor, e.data["created"], e.data["write"]) for e in entries] == [
        ("grant.changed", admin_user.username, True, "approve"), ("grant.changed", admin_user.username, False, "deny")]


def test_admin_delete_and_bulk_delete_go_through_the_service(admin_client, bot, portal):
    grants = [grant_upsert(agent=bot, portal=portal, pack=p) for p in ("core", "comms", "diagnostics")]
    assert admin_client.post(f"{GRANTS}{grants[0].pk}/delete/", {"post": "yes"}).status_code == 302
    response = admin_client.post(GRANTS, {"action": "delete_selected", "post": "yes",
                                          "_selected_action": [g.pk for g in grants[1:]]})
    assert response.status_code == 302
    assert not PackGrant.objects.filter(agent=bot).exists()
    removed = AuditEntry.objects.filter(action="grant.removed").order_by("pk")
    assert sorted(e.data["pack"] for e in removed) == ["comms", "core", "diagnostics"]
    assert all(e.actor == "admin" for e in removed)


def test_admin_bulk_delete_is_all_or_nothing(admin_client, bot, portal):
    grants = [grant_upsert(agent=bot, portal=portal, pack=p) for p in ("core", "comms")]
    before = AuditEntry.objects.count()
    with failing_after_audit(services, after=2):
        admin_client.post(GRANTS, {"action": "delete_selected", "post": "yes",
                                   "_selected_action": [g.pk for g in grants]})
    assert PackGrant.objects.filter(agent=bot).count() == 2 and AuditEntry.objects.count() == before
