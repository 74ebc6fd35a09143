"""What runs is exactly what was approved, by whom it was approved for (issue 12, hand mutations):
each approval's own content hash is compared at execution, and a deactivated agent or portal
cannot run a plan approved before it was deactivated. The portal is a recorder: nothing may reach it."""

import pytest

from apps.agents.services import agent_revoke
from apps.plans import executor, services
from apps.plans.models import Approval, Plan
from apps.portals.models import Portal

pytestmark = pytest.mark.django_db
ADD = [{"name": "call", "method": "crm.lead.add", "params": {"fields": {"TITLE": "t"}}}]


@pytest.fixture
def sent(monkeypatch):
    calls = []

    class Recorder:
        def __init__(self, portal):
            self.portal = portal

        def run_steps(self, steps):
            calls.append((self.portal.slug, steps))
            return {"steps": {s["name"]: {"result": 1, "error": None, "total": None, "next": None} for s in steps}}

    monkeypatch.setattr(executor, "BitrixClient", Recorder)
    return calls


@pytest.fixture
def approved(portal, make_agent, approver):
    agent = make_agent("integrity", portal=portal)  # writes need one approver
    plan = services.plan_submit(agent=agent, portal=portal, steps=ADD).plan
    services.plan_decide(plan_id=plan.pk, user=approver, decision="approve")
    assert Plan.objects.get(pk=plan.pk).status == "approved"
    return plan


def test_an_untouched_approved_plan_runs(approved, sent):
    assert executor.execute(plan_id=approved.pk).status == "succeeded"
    assert len(sent) == 1


def test_an_approval_given_for_other_content_stops_the_plan(approved, sent):
    # The plan and its own hash agree; the approver's decision was for something else.
    Approval.objects.filter(plan=approved).update(content_hash="0" * 64)
    assert executor.execute(plan_id=approved.pk).status == "failed"
    plan = Plan.objects.get(pk=approved.pk)
    assert plan.error["code"] == "content_hash_mismatch"
    assert sent == [] and plan.attempts.count() == 0


def test_a_revoked_agent_cannot_run_its_approved_plan(approved, sent):
    agent_revoke(agent=approved.agent)
    assert executor.execute(plan_id=approved.pk).status == "failed"
    plan = Plan.objects.get(pk=approved.pk)
    assert plan.error["code"] == "policy_refused"
    assert sent == [] and plan.attempts.count() == 0


def test_a_deactivated_portal_runs_no_approved_plan(approved, sent):
    Portal.objects.filter(pk=approved.portal_id).update(is_active=False)
    assert executor.execute(plan_id=approved.pk).status == "failed"
    plan = Plan.objects.get(pk=approved.pk)
    assert plan.error["code"] == "policy_refused"
    assert sent == [] and plan.attempts.count() == 0
