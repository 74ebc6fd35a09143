"""Who may decide is one rule (apps.plans.selectors): the services and the admin's buttons and
actions use it, so nobody sees an Approve button the service would refuse."""

import pytest
from django.contrib.auth.models import Permission

from apps.core.exceptions import NotAllowed
from apps.plans import services
from apps.plans.selectors import plan_decisions_for, plans_decidable_by, user_may_decide
from apps.plans.services import user_may_approve

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/plans/plan/"


def pending(agent, portal):
    return services.plan_submit(agent=agent, portal=portal,
                                steps=[{"name": "call", "method": "crm.lead.add", "params": {"fields": {"A": 1}}}]).plan


def test_a_superuser_off_the_approver_list_gets_no_buttons_and_no_actions(admin_client, admin_user, agent, portal):
    plan = pending(agent, portal)
    assert not user_may_decide(user=admin_user, portal=portal) and not user_may_approve(user=admin_user, portal=portal)
    change = admin_client.get(f"{CHANGELIST}{plan.pk}/change/").content.decode()
    assert str(plan.pk) in change  # a superuser still sees the plan...
    assert "decision-approve" not in change and "decision-reject" not in change  # ...but may not decide it
    listing = admin_client.get(CHANGELIST).content.decode()
    assert str(plan.pk)[:8] in listing and "approve_selected" not in listing and "reject_selected" not in listing
    assert admin_client.get(f"{CHANGELIST}{plan.pk}/decide/approve/").status_code == 403
    with pytest.raises(NotAllowed):
        services.plan_decide(plan_id=plan.pk, user=admin_user, decision="approve")


def test_a_superuser_on_the_approver_list_gets_them(admin_client, admin_user, agent, portal):
    portal.approvers.add(admin_user)
    plan = pending(agent, portal)
    change = admin_client.get(f"{CHANGELIST}{plan.pk}/change/").content.decode()
    assert "decision-approve" in change and "decision-reject" in change
    assert "approve_selected" in admin_client.get(CHANGELIST).content.decode()
    assert admin_client.get(f"{CHANGELIST}{plan.pk}/decide/approve/").status_code == 200


def test_an_approver_sees_the_buttons_until_they_decided(client, agent, portal, approver, approver2):
    plan = services.plan_submit(agent=agent, portal=portal,
                                steps=[{"name": "call", "method": "crm.lead.delete", "params": {"id": 1}}]).plan
    client.force_login(approver)
    assert "decision-approve" in client.get(f"{CHANGELIST}{plan.pk}/change/").content.decode()
    services.plan_decide(plan_id=plan.pk, user=approver, decision="approve")
    assert "decision-approve" not in client.get(f"{CHANGELIST}{plan.pk}/change/").content.decode()
    assert client.get(f"{CHANGELIST}{plan.pk}/decide/approve/").status_code == 403
    assert plan_decisions_for(user=approver2, plan=plan) == ["approve", "reject"]


def test_the_owner_of_the_agent_gets_no_buttons(client, make_agent, portal, approver):
    owned = make_agent("owned", portal=portal, owner=approver)
    plan = pending(owned, portal)
    client.force_login(approver)
    assert "decision-approve" not in client.get(f"{CHANGELIST}{plan.pk}/change/").content.decode()
    with pytest.raises(NotAllowed):
        services.plan_decide(plan_id=plan.pk, user=approver, decision="approve")


def test_the_permission_and_an_active_account_are_needed(agent, portal, approver, django_user_model):
    plan = pending(agent, portal)
    assert list(plans_decidable_by(approver)) == [plan]
    listed = django_user_model.objects.create_user("listed", is_staff=True)
    portal.approvers.add(listed)
    assert not user_may_decide(user=listed, portal=portal) and not plans_decidable_by(listed).exists()
    listed.user_permissions.add(Permission.objects.get(codename="approve_plan"))
    listed = django_user_model.objects.get(pk=listed.pk)
    assert user_may_decide(user=listed, portal=portal)
    listed.is_active = False
    assert not user_may_decide(user=listed, portal=portal) and not user_may_approve(user=listed, portal=portal)


def test_the_action_confirmation_lists_only_what_the_user_may_decide(client, agent, portal, approver, make_agent,
                                                                     make_approver):
    from apps.portals.services import portal_upsert

    other, _ = portal_upsert(slug="other", base_url="https://other.bitrix24.com", auth_mode="webhook")
    mine = pending(agent, portal)
    theirs = pending(make_agent("other-bot", portal=other), other)
    approver.is_superuser = True  # sees every plan, may decide only on acme
    approver.save()
    client.force_login(approver)
    page = client.post(CHANGELIST, {"action": "approve_selected", "_selected_action": [str(mine.pk), str(theirs.pk)]})
    text = page.content.decode()
    assert f'id="plan-{mine.pk}"' in text and f'id="plan-{theirs.pk}"' not in text
    assert f'value="{theirs.pk}"' not in text
    assert any(str(theirs.pk)[:8] in m.message for m in page.wsgi_request._messages)
