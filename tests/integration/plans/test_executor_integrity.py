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
        def __init__(self, portal, **kwargs):
            self.portal = portal

        def run_steps(self, steps, **kwargs):
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


@pytest.fixture
def refused(monkeypatch):
    """A portal that refuses every call before running it (NotSent), or our limiter defers it."""
    from apps.bitrix.errors import Deferred, NotSent

    state = {"exc": NotSent("QUERY_LIMIT_EXCEEDED", "Too many requests", retry_after=0.5), "calls": 0}

    class Refusing:
        def __init__(self, portal, **kwargs):
            pass

        def run_steps(self, steps, **kwargs):
            state["calls"] += 1
            raise state["exc"]

    monkeypatch.setattr(executor, "BitrixClient", Refusing)
    state["deferred"] = Deferred("LOCAL_RATE_LIMIT", "The budget is used up.", retry_after=3.0)
    return state


def run_until_final(plan_id, outcome=None):
    outcome = outcome or executor.execute(plan_id=plan_id)
    while outcome.retry_in is not None:
        outcome = executor.execute(plan_id=plan_id, attempt=outcome.attempt)
    return outcome


def test_calls_refused_before_running_are_tried_eight_times(approved, refused):
    assert run_until_final(approved.pk).status == "failed"
    plan = Plan.objects.get(pk=approved.pk)
    assert plan.error["code"] == "retries_exhausted" and "after 8 tries and 0 deferrals" in plan.error["message"]
    assert refused["calls"] == 8 == plan.attempts.count()


def test_our_own_limiter_defers_two_hundred_times_then_gives_up(approved, refused):
    refused["exc"] = refused["deferred"]
    first = executor.execute(plan_id=approved.pk)
    assert 3.0 <= first.retry_in <= 4.0  # exactly what the bucket said, plus under a second of jitter
    assert run_until_final(approved.pk, first).status == "failed"
    plan = Plan.objects.get(pk=approved.pk)
    assert "after 0 tries and 200 deferrals" in plan.error["message"]


def test_backoff_doubles_from_two_seconds_with_jitter_up_to_the_cap():
    for _ in range(200):
        assert 1.0 <= executor.backoff(1) <= 2.0
        assert 4.0 <= executor.backoff(3) <= 8.0
        assert 150.0 <= executor.backoff(30) <= 300.0
        assert executor.backoff(1, at_least=42.0) == 42.0
