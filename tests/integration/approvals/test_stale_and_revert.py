"""A record that changed after approval is not overwritten: nothing is sent, the approvals are
dismissed and the plan waits again with the new pre-image. An executed update can be reverted
by a new plan; a delete says why it cannot. Against a sandbox portal over HTTP."""

import json

import pytest
from django.core import mail
from django.urls import reverse

from apps.approvals.models import Mailbox, Notice, PlanPreview
from apps.audit.models import AuditEntry
from apps.bitrix.client import BitrixClient
from apps.plans.models import Approval, Plan
from apps.plans.services import plan_decide


@pytest.fixture(autouse=True)
def no_mfa(settings):
    settings.APPROVER_MFA_REQUIRED = False


@pytest.fixture
def sandbox_portal(make_sandbox_portal):
    return make_sandbox_portal("st")

@pytest.fixture
def world(sandbox_portal, make_agent, make_approver):
    agent = make_agent("st-agent", portal=sandbox_portal, destructive="approve")
    approver = make_approver("st-approver", portals=[sandbox_portal])
    portal_client = BitrixClient(sandbox_portal)
    return agent, approver, portal_client


def submit(client, agent, method, params):
    answer = client.post("/api/v1/plans", data=json.dumps({"portal": "st", "method": method, "params": params}),
                         content_type="application/json", headers={"Authorization": f"Bearer {agent.token}"})
    assert answer.status_code == 201, answer.content
    return answer.json()["id"]


def title(portal_client, lead_id):
    return portal_client.call("crm.lead.get", {"id": lead_id}).result["TITLE"]


def test_a_record_changed_after_approval_goes_back_to_the_approvers(client, world, celery_drain):
    agent, approver, portal_client = world
    approver.email = "st-approver@example.com"
    approver.save()
    lead = portal_client.call("crm.lead.add", {"fields": {"TITLE": "ACME order"}}).result
    plan_id = submit(client, agent, "crm.lead.update", {"id": lead, "fields": {"TITLE": "ACME order (paid)"}})
    celery_drain()  # reads the pre-image, tells the approvers
    first_told = Plan.objects.get(pk=plan_id).approvers_told_at
    assert first_told is not None
    assert list(Notice.objects.filter(plan_id=plan_id).values_list("user_id", "kind", "round")) == [
        (approver.pk, "pending", 0)]
    plan_decide(plan_id=plan_id, user=approver, decision="approve")
    portal_client.call("crm.lead.update", {"id": lead, "fields": {"TITLE": "ACME order (cancelled)"}})
    Mailbox.objects.filter(user=approver).update(last_sent_at=None)  # the minute between emails is over

    celery_drain()  # the executor re-reads, finds the change, sends nothing
    plan = Plan.objects.get(pk=plan_id)
    assert plan.status == "pending_approval"
    assert plan.approvers_told_at > first_told  # waiting again: its portal's notice run took it up again
    # and they are told again, in so many words (a notice of its own: the first one is not made twice)
    assert list(Notice.objects.filter(plan_id=plan_id).order_by("round").values_list("user_id", "kind", "round")) == [
        (approver.pk, "pending", 0), (approver.pk, "pending", 1)]
    again = Notice.objects.get(plan_id=plan_id, round=1)
    assert mail.outbox[-1].subject == (f"Plan {plan_id[:8]} on st waits for your decision again: "
                                       "a record changed after it was approved")
    again.refresh_from_db()
    assert again.status == "sent"
    assert title(portal_client, lead) == "ACME order (cancelled)"
    assert plan.approvals.count() == 0
    assert [(a.outcome, a.detail) for a in plan.attempts.all()] == [
        ("not_sent", {"code": "changed_since_approval", "steps": ["call"]})]  # the attempt says why
    assert Approval.history.filter(plan=plan, dismissed_at__isnull=False).count() == 1
    preview = PlanPreview.objects.get(plan=plan)
    assert preview.changed["call"]["TITLE"] == ["ACME order", "ACME order (cancelled)"]
    assert preview.steps["call"]["before"]["TITLE"] == "ACME order (cancelled)"
    transition = AuditEntry.objects.filter(plan_id=plan.pk, action="plan.transition").last()
    assert transition.data["to"] == "pending_approval" and "call" in transition.data["changed_since_approval"]

    client.force_login(approver)
    html = client.get(reverse("approvals:plan", args=[plan_id])).content.decode()
    assert 'id="changed-notice"' in html and "ACME order (cancelled)" in html
    assert "TITLE &#x27;ACME order (cancelled)&#x27; → &#x27;ACME order (paid)&#x27;" in html
    assert 'id="approve-button"' in html  # the same approver decides again

    plan_decide(plan_id=plan_id, user=approver, decision="approve")
    celery_drain()
    assert Plan.objects.get(pk=plan_id).status == "succeeded"
    assert title(portal_client, lead) == "ACME order (paid)"


def test_revert_submits_the_inverse_update_as_a_new_plan(client, world, celery_drain):
    agent, approver, portal_client = world
    lead = portal_client.call("crm.lead.add", {"fields": {"TITLE": "Before", "COMMENTS": "keep"}}).result
    plan_id = submit(client, agent, "crm.lead.update", {"id": lead, "fields": {"TITLE": "After"}})
    celery_drain()
    plan_decide(plan_id=plan_id, user=approver, decision="approve")
    celery_drain()
    assert title(portal_client, lead) == "After"

    client.force_login(approver)
    page = client.get(reverse("approvals:plan", args=[plan_id])).content.decode()
    assert 'id="revert-button"' in page
    answer = client.post(reverse("approvals:revert", args=[plan_id]))
    revert = Plan.objects.exclude(pk=plan_id).get(agent=agent)
    assert answer["Location"] == reverse("approvals:plan", args=[revert.pk])
    assert revert.status == "pending_approval"  # approved like any other write
    assert revert.steps == [{"name": "call", "method": "crm.lead.update",
                             "params": {"id": lead, "fields": {"TITLE": "Before"}}}]
    assert AuditEntry.objects.filter(plan_id=plan_id, action="plan.revert_requested").count() == 1
    celery_drain()
    plan_decide(plan_id=revert.pk, user=approver, decision="approve")
    celery_drain()
    assert title(portal_client, lead) == "Before"
    assert f"/approvals/plans/{revert.pk}/" in client.get(reverse("approvals:plan", args=[plan_id])).content.decode()


def test_a_delete_says_why_it_cannot_be_reverted(client, world, celery_drain):
    agent, approver, portal_client = world
    lead = portal_client.call("crm.lead.add", {"fields": {"TITLE": "Doomed"}}).result
    plan_id = submit(client, agent, "crm.lead.delete", {"id": lead})
    celery_drain()
    plan_decide(plan_id=plan_id, user=approver, decision="approve")
    celery_drain()
    assert Plan.objects.get(pk=plan_id).status == "succeeded"
    client.force_login(approver)
    page = client.get(reverse("approvals:plan", args=[plan_id])).content.decode()
    assert 'id="revert-button"' not in page
    assert "Bitrix24 has no undelete over REST" in page
    client.post(reverse("approvals:revert", args=[plan_id]))
    assert Plan.objects.filter(agent=agent).count() == 1
