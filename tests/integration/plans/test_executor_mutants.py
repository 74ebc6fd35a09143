"""Tests written against the mutants of apps/plans/executor.py that its test set let survive
(mutmut 2.5.1, `make mutate MUTATE_ONLY=executor`; bench/README.md lists them): the exact refusal
each check right before sending gives, and that the check reads the steps as they were approved.
The portal is a recorder (no HTTP): a refused plan must reach it with nothing."""

import pytest

from apps.agents.services import agent_revoke
from apps.plans import executor, services
from apps.plans.models import Approval, Plan
from apps.policy.models import PackGrant
from apps.portals.models import Portal

pytestmark = pytest.mark.django_db
ADD = [{"name": "call", "method": "crm.lead.add", "params": {"fields": {"TITLE": "t"}}}]


@pytest.fixture
def sent(monkeypatch):
    calls = []

    class Recorder:
        def __init__(self, portal, **kwargs):
            self.portal = portal

        def run_steps(self, steps, **kwargs):
            calls.append(steps)
            return {"steps": {s["name"]: {"result": 1, "error": None, "total": None, "next": None} for s in steps}}

    monkeypatch.setattr(executor, "BitrixClient", Recorder)
    return calls


@pytest.fixture
def approve(portal, make_agent, approver):
    def make(steps=ADD, slug="mut-agent", **policies):
        agent = make_agent(slug, portal=portal, **policies)
        plan = services.plan_submit(agent=agent, portal=portal, steps=steps).plan
        if plan.status == "pending_approval":
            services.plan_decide(plan_id=plan.pk, user=approver, decision="approve")
        plan = Plan.objects.get(pk=plan.pk)
        assert plan.status == "approved"
        return plan

    return make


def refused_with(plan_id, sent) -> dict:
    assert executor.execute(plan_id=plan_id).status == "failed"
    plan = Plan.objects.get(pk=plan_id)
    assert sent == [] and plan.attempts.count() == 0
    return plan.error


def test_content_mismatch_is_refused_with_its_exact_error(approve, sent):
    plan = approve()
    Approval.objects.filter(plan=plan).update(content_hash="0" * 64)
    assert refused_with(plan.pk, sent) == {
        "code": "content_hash_mismatch",
        "message": "The plan's content is not what was approved; nothing was sent."}


@pytest.mark.parametrize("what", ["agent", "portal"])
def test_a_deactivated_agent_or_portal_is_refused_with_its_exact_error(approve, sent, what):
    plan = approve()
    if what == "agent":
        agent_revoke(agent=plan.agent)
    else:
        Portal.objects.filter(pk=plan.portal_id).update(is_active=False)
    assert refused_with(plan.pk, sent) == {
        "code": "policy_refused", "message": "The agent or the portal was deactivated; nothing was sent."}


def test_a_revoked_grant_is_refused_with_its_reasons(approve, sent):
    plan = approve()
    PackGrant.objects.filter(agent=plan.agent).delete()
    error = refused_with(plan.pk, sent)
    assert error["code"] == "policy_refused"
    assert error["message"] == "The grants no longer allow this plan; nothing was sent."
    assert error["outcome"] == "not_granted" and error["reasons"] and all(isinstance(r, str) for r in error["reasons"])
    assert any("crm.lead.add" in r for r in error["reasons"]), error["reasons"]
    assert set(error) == {"code", "message", "reasons", "outcome"}


def test_a_tightened_policy_is_refused_naming_the_approvals_now_needed(approve, sent):
    plan = approve()
    PackGrant.objects.filter(agent=plan.agent).update(write_policy="approve2")
    assert refused_with(plan.pk, sent) == {
        "code": "policy_refused",
        "message": "The policy now needs more approvals than the plan had; nothing was sent.",
        "approvals_required": 2}


def test_the_policy_is_applied_to_the_params_that_were_approved(approve, sent):
    """`user.update` that deactivates a user is destructive by its params alone: approved while
    destructive calls were allowed, it stops when they are denied, although `user.update` itself
    is only a write."""
    steps = [{"name": "off", "method": "user.update", "params": {"ID": 7, "ACTIVE": "N"}}]
    plan = approve(steps, write="auto", destructive="approve")
    PackGrant.objects.filter(agent=plan.agent).update(destructive_policy="deny")
    error = refused_with(plan.pk, sent)
    assert error["message"] == "The grants no longer allow this plan; nothing was sent."


def test_an_approved_batch_plan_runs_with_its_commands(approve, sent):
    steps = [{"name": "b", "method": "batch",
              "params": {"halt": 1, "cmd": {"a": "crm.lead.get?id=1", "b": "crm.deal.get?id=2"}}}]
    plan = approve(steps, read="auto")
    assert executor.execute(plan_id=plan.pk).status == "succeeded"
    assert sent == [steps]
