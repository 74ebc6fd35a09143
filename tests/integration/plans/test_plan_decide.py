"""Approval rules through the service the admin and decide_plan share."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.core.exceptions import NotAllowed
from apps.plans import services
from apps.plans.models import Approval, Plan
from apps.plans.states import StaleState

pytestmark = pytest.mark.django_db


def submit(agent, portal, method="crm.lead.add", params=None):
    steps = [{"name": "call", "method": method, "params": params or {"fields": {"TITLE": "x"}}}]
    return services.plan_submit(agent=agent, portal=portal, steps=steps).plan


def test_read_is_approved_at_once_and_enqueued_on_commit(agent, portal, django_capture_on_commit_callbacks,
                                                         queued_executions):
    with django_capture_on_commit_callbacks() as callbacks:
        plan = submit(agent, portal, "crm.lead.list", {})
    assert plan.status == "approved"
    assert plan.approvals_required == 0
    assert queued_executions == []  # nothing is published before the transaction commits
    for callback in callbacks:
        callback()
    assert queued_executions == [((str(plan.pk),), {}, None)]


def test_write_waits_for_one_approver(agent, portal, approver, django_capture_on_commit_callbacks,
                                      queued_executions):
    with django_capture_on_commit_callbacks(execute=True):
        plan = submit(agent, portal)
    assert plan.status == "pending_approval" and plan.approvals_required == 1
    assert queued_executions == []  # a plan waiting for approval is not queued
    with django_capture_on_commit_callbacks() as callbacks:
        plan = services.plan_decide(plan_id=plan.pk, user=approver, decision="approve", comment="ok")
    assert plan.status == "approved"
    assert queued_executions == []
    for callback in callbacks:
        callback()
    assert queued_executions == [((str(plan.pk),), {}, None)]
    approval = Approval.objects.get(plan=plan)
    assert approval.content_hash == plan.content_hash and approval.comment == "ok"


def test_approve2_needs_two_distinct_approvers(agent, portal, approver, approver2, django_capture_on_commit_callbacks,
                                               queued_executions):
    plan = submit(agent, portal, "crm.lead.delete", {"id": 1})
    assert plan.risk == "destructive" and plan.approvals_required == 2
    with django_capture_on_commit_callbacks(execute=True):
        plan = services.plan_decide(plan_id=plan.pk, user=approver, decision="approve")
    assert plan.status == "pending_approval"
    assert queued_executions == []  # one approval of two queues nothing
    with pytest.raises(NotAllowed):
        services.plan_decide(plan_id=plan.pk, user=approver, decision="approve")
    with django_capture_on_commit_callbacks(execute=True):
        plan = services.plan_decide(plan_id=plan.pk, user=approver2, decision="approve")
    assert plan.status == "approved"
    assert queued_executions == [((str(plan.pk),), {}, None)]


def test_one_rejection_ends_an_approve2_plan(agent, portal, approver, approver2):
    plan = submit(agent, portal, "crm.lead.delete", {"id": 1})
    services.plan_decide(plan_id=plan.pk, user=approver, decision="approve")
    plan = services.plan_decide(plan_id=plan.pk, user=approver2, decision="reject", comment="no")
    assert plan.status == "rejected"


def test_approver_must_be_listed_on_the_portal(agent, portal, make_approver):
    outsider = make_approver("mallory", portals=[])
    plan = submit(agent, portal)
    with pytest.raises(NotAllowed):
        services.plan_decide(plan_id=plan.pk, user=outsider, decision="approve")
    assert Plan.objects.get(pk=plan.pk).status == "pending_approval"


def test_approver_needs_the_permission(agent, portal, django_user_model):
    user = django_user_model.objects.create_user("noperm", password="x")
    portal.approvers.add(user)
    plan = submit(agent, portal)
    with pytest.raises(NotAllowed):
        services.plan_decide(plan_id=plan.pk, user=user, decision="approve")


def test_owner_of_agent_cannot_approve(make_agent, portal, make_approver):
    owner = make_approver("owner", portals=[portal])
    agent = make_agent("owned", portal=portal, owner=owner)
    plan = submit(agent, portal)
    with pytest.raises(NotAllowed):
        services.plan_decide(plan_id=plan.pk, user=owner, decision="approve")


def test_decision_on_changed_content_is_refused(agent, portal, approver):
    plan = submit(agent, portal)
    Plan.objects.filter(pk=plan.pk).update(steps=[{"name": "call", "method": "crm.lead.add", "params": {"x": 1}}])
    with pytest.raises(StaleState):
        services.plan_decide(plan_id=plan.pk, user=approver, decision="approve")


def test_decision_binds_to_the_hash_the_approver_saw(agent, portal, approver):
    plan = submit(agent, portal)
    with pytest.raises(StaleState):
        services.plan_decide(plan_id=plan.pk, user=approver, decision="approve", seen_hash="f" * 64)


def test_cannot_decide_a_final_plan(agent, portal, approver, approver2):
    plan = submit(agent, portal)
    services.plan_decide(plan_id=plan.pk, user=approver, decision="reject")
    with pytest.raises(StaleState):
        services.plan_decide(plan_id=plan.pk, user=approver2, decision="approve")


def test_expiry_after_ttl(agent, portal, settings):
    import datetime

    from django.utils import timezone

    plan = submit(agent, portal)
    assert services.plans_expire_due(now=timezone.now()) == 0
    later = timezone.now() + datetime.timedelta(seconds=settings.PLAN_TTL + 1)
    assert services.plans_expire_due(now=later) == 1
    assert Plan.objects.get(pk=plan.pk).status == "expired"


def test_cancel_only_before_execution(agent, portal, make_agent):
    plan = submit(agent, portal)
    other = make_agent("other", portal=portal)
    from apps.core.exceptions import NotFound

    with pytest.raises(NotFound):
        services.plan_cancel(plan_id=plan.pk, agent=other)
    assert services.plan_cancel(plan_id=plan.pk, agent=agent).status == "cancelled"
    with pytest.raises(StaleState):
        services.plan_cancel(plan_id=plan.pk, agent=agent)


def test_decide_plan_command_uses_the_same_rules(agent, portal, approver, make_approver, capsys):
    plan = submit(agent, portal)
    outsider = make_approver("eve", portals=[])
    with pytest.raises(CommandError, match="may not approve"):
        call_command("decide_plan", str(plan.pk), "--as", "eve", "--approve")
    call_command("decide_plan", str(plan.pk), "--as", "alice", "--approve", "--comment", "fine")
    assert "approved" in capsys.readouterr().out
    assert Plan.objects.get(pk=plan.pk).status == "approved"
    assert outsider.approvals.count() == 0
