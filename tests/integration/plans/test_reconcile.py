"""Settling a plan whose outcome was unknown: as failed (after checking the portal), by an
approver of its portal only, once, with its audit entries; the admin action goes the same way."""

import pytest

from apps.audit.models import AuditEntry
from apps.core.exceptions import NotAllowed
from apps.plans import services
from apps.plans.models import Plan
from apps.plans.states import StaleState, transition

pytestmark = pytest.mark.django_db
ADD = [{"name": "call", "method": "crm.lead.add", "params": {"fields": {"TITLE": "t"}}}]
LOST = {"code": "outcome_unknown", "message": "The answer was lost."}


@pytest.fixture
def unknown(portal, make_agent):
    agent = make_agent("recon", portal=portal, write="auto")
    plan = services.plan_submit(agent=agent, portal=portal, steps=ADD).plan
    plan = transition(plan=plan, source="approved", target="executing")
    return transition(plan=plan, source="executing", target="needs_reconciliation", error=LOST)


def test_settled_as_failed_keeps_the_cause_and_is_audited(unknown, approver):
    mark = AuditEntry.objects.order_by("-pk").first().pk
    plan = services.plan_reconcile(plan_id=unknown.pk, user=approver, succeeded=False, comment="not on the portal")
    stored = Plan.objects.get(pk=unknown.pk)
    assert plan.status == stored.status == "failed" and stored.finished_at is not None
    assert stored.error == {**LOST, "reconciled": "failed", "comment": "not on the portal"}
    entries = [(e.action, e.actor, e.data) for e in AuditEntry.objects.filter(pk__gt=mark).order_by("pk")]
    assert entries == [
        ("plan.reconciled", "alice", {"succeeded": False, "comment": "not on the portal"}),
        ("plan.transition", "alice", {"from": "needs_reconciliation", "to": "failed"}),
    ]
    with pytest.raises(StaleState):  # settled once
        services.plan_reconcile(plan_id=unknown.pk, user=approver, succeeded=True)
    assert Plan.objects.get(pk=unknown.pk).status == "failed"


def test_only_an_approver_of_the_portal_settles(unknown, make_approver):
    outsider = make_approver("mallory")  # may approve, but not on this portal
    with pytest.raises(NotAllowed):
        services.plan_reconcile(plan_id=unknown.pk, user=outsider, succeeded=False)
    assert Plan.objects.get(pk=unknown.pk).status == "needs_reconciliation"
    assert not AuditEntry.objects.filter(action="plan.reconciled").exists()


def test_the_admin_settles_as_failed_through_the_service(unknown, approver, client):
    client.force_login(approver)
    response = client.post("/admin/plans/plan/", {"action": "settle_failed", "_selected_action": [unknown.pk],
                                                  "post": "yes", "comment": "checked by hand"}, follow=True)
    assert response.status_code == 200
    stored = Plan.objects.get(pk=unknown.pk)
    assert stored.status == "failed" and stored.error["reconciled"] == "failed"
    assert stored.error["comment"] == "checked by hand"
    assert AuditEntry.objects.filter(action="plan.reconciled", actor="alice").count() == 1
