"""Tests written against the mutants of apps/plans/executor.py that its test set let survive
(mutmut 2.5.1, `make mutate MUTATE_ONLY=executor`; bench/README.md lists them): the exact refusal
each check right before sending gives, and that the check reads the steps as they were approved.
The portal is a recorder (no HTTP): a refused plan must reach it with nothing."""

import datetime

import pytest
from django.utils import timezone

from apps.agents.services import agent_revoke
from apps.audit import registry as audit_events
from apps.bitrix.errors import BitrixError, Deferred, NotSent, OutcomeUnknown
from apps.plans import executor, services
from apps.plans.choices import AttemptOutcome
from apps.plans.evaluation import content_hash
from apps.plans.models import Approval, ExecutionAttempt, Plan
from apps.policy.models import PackGrant
from apps.portals.models import Portal
from tests.integration.audit_helpers import last_seq, new_entries

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


# --- entering, and which retries may run -------------------------------------------------------


@pytest.fixture
def portal_answers(monkeypatch):
    """A portal whose answer the test sets: `state["refuse"]` True refuses each call before
    running it (NotSent, safe to retry); otherwise every step succeeds."""
    state = {"refuse": True, "calls": 0}

    class Switchable:
        def __init__(self, portal, **kwargs):
            pass

        def run_steps(self, steps, **kwargs):
            state["calls"] += 1
            if state["refuse"]:
                raise NotSent("QUERY_LIMIT_EXCEEDED", "Too many requests", retry_after=0.5)
            return {"steps": {s["name"]: {"result": 1, "error": None, "total": None, "next": None} for s in steps}}

    monkeypatch.setattr(executor, "BitrixClient", Switchable)
    return state


def test_the_first_run_records_attempt_one_and_audits_it(approve, sent):
    plan = approve()
    since = last_seq()
    assert executor.execute(plan_id=plan.pk).status == "succeeded"
    plan = Plan.objects.get(pk=plan.pk)
    assert plan.attempt_count == 1 and list(plan.attempts.values_list("number", flat=True)) == [1]
    attempts = [e for e in new_entries(since) if e.action == audit_events.PLAN_ATTEMPT]
    assert [e.data for e in attempts] == [{"attempt": 1, "methods": ["crm.lead.add"]}]


def test_only_the_scheduled_retry_runs(approve, portal_answers):
    plan = approve()
    first = executor.execute(plan_id=plan.pk)
    assert (first.status, first.attempt) == ("executing", 1) and first.retry_in is not None
    portal_answers["refuse"] = False
    for stale in (0, 2, 3):  # attempts this executor never scheduled
        assert executor.execute(plan_id=plan.pk, attempt=stale).status == "skipped"
    assert portal_answers["calls"] == 1
    assert executor.execute(plan_id=plan.pk, attempt=1).status == "succeeded"
    assert portal_answers["calls"] == 2
    assert Plan.objects.get(pk=plan.pk).attempt_count == 2
    # the retry's task redelivered: the plan is final, nothing runs again
    assert executor.execute(plan_id=plan.pk, attempt=1).status == "skipped"
    assert executor.execute(plan_id=plan.pk, attempt=2).status == "skipped"
    assert portal_answers["calls"] == 2


def test_a_retry_after_an_answered_attempt_does_not_run(approve, portal_answers):
    """The last attempt was answered (its worker died before settling the plan): the plan is
    left for recovery, a retry of that attempt never sends again."""
    plan = approve()
    executor.execute(plan_id=plan.pk)
    ExecutionAttempt.objects.filter(plan=plan, number=1).update(outcome=AttemptOutcome.ANSWERED)
    portal_answers["refuse"] = False
    assert executor.execute(plan_id=plan.pk, attempt=1).status == "skipped"
    assert portal_answers["calls"] == 1


@pytest.mark.parametrize("outcome", [AttemptOutcome.NOT_SENT, AttemptOutcome.UNKNOWN])
def test_a_retry_of_a_plan_no_longer_executing_does_not_run(approve, portal_answers, outcome):
    plan = approve()
    executor.execute(plan_id=plan.pk)
    ExecutionAttempt.objects.filter(plan=plan, number=1).update(outcome=outcome)
    Plan.objects.filter(pk=plan.pk).update(status="needs_reconciliation")
    portal_answers["refuse"] = False
    assert executor.execute(plan_id=plan.pk, attempt=1).status == "skipped"
    assert portal_answers["calls"] == 1


def test_a_refusal_that_lost_the_race_is_skipped(approve, sent):
    """Another run moved the plan out of `approved` between the read and the refusal."""
    plan = approve()
    loaded = Plan.objects.get(pk=plan.pk)
    Plan.objects.filter(pk=plan.pk).update(status="executing")
    outcome = executor._refuse(loaded, ("policy_refused", "The grants no longer allow this plan.", {}))
    assert outcome == executor.Outcome("skipped")
    assert Plan.objects.get(pk=plan.pk).status == "executing"


def test_steps_the_policy_cannot_read_are_refused_with_the_policys_message(approve, sent):
    """A stored plan whose steps no longer parse (its row and every approval rewritten
    consistently, so the content check passes): the policy's own error is the refusal."""
    plan = approve()
    steps = [{"name": "call", "method": "", "params": {}}]
    digest = content_hash(portal_slug=plan.portal.slug, steps=steps)
    Plan.objects.filter(pk=plan.pk).update(steps=steps, content_hash=digest)
    Approval.objects.filter(plan=plan).update(content_hash=digest)
    error = refused_with(plan.pk, sent)
    assert error["code"] == "policy_refused" and set(error) == {"code", "message"}
    assert error["message"] and "nothing was sent" not in error["message"]


def test_a_retry_is_checked_again_before_it_is_sent(approve, portal_answers):
    """The grant was revoked while the plan waited for its retry: the retry fails, unsent."""
    plan = approve()
    assert executor.execute(plan_id=plan.pk).attempt == 1
    PackGrant.objects.filter(agent=plan.agent).delete()
    portal_answers["refuse"] = False
    assert executor.execute(plan_id=plan.pk, attempt=1).status == "failed"
    plan = Plan.objects.get(pk=plan.pk)
    assert plan.error["code"] == "policy_refused" and plan.attempt_count == 1
    assert portal_answers["calls"] == 1


def test_a_run_that_loses_the_race_to_enter_sends_nothing(approve, sent, monkeypatch):
    """Another run enters the plan between this run's read and its own conditional update."""
    plan = approve()
    check = executor._check

    def check_then_lose(loaded, grants=None):
        problem = check(loaded, grants)
        Plan.objects.filter(pk=loaded.pk).update(status="executing", attempt_count=1)
        return problem

    monkeypatch.setattr(executor, "_check", check_then_lose)
    assert executor.execute(plan_id=plan.pk) == executor.Outcome("skipped")
    assert sent == [] and ExecutionAttempt.objects.filter(plan=plan).count() == 0


def test_record_attempt_keeps_the_plan_object_in_step(approve, portal_answers):
    """The helper `plans_recover_stale` shares: the next number, recorded once, on the row and on
    the object it was given; a second caller holding the old count gets None."""
    plan = approve()
    executor.execute(plan_id=plan.pk)
    loaded, other = Plan.objects.get(pk=plan.pk), Plan.objects.get(pk=plan.pk)
    record = executor.record_attempt(loaded)
    assert record.number == 2 and loaded.attempt_count == 2
    assert Plan.objects.get(pk=plan.pk).attempt_count == 2
    assert executor.record_attempt(other) is None and other.attempt_count == 1


def test_a_refused_plan_audits_why_it_failed(approve, sent):
    plan = approve()
    Approval.objects.filter(plan=plan).update(content_hash="0" * 64)
    since = last_seq()
    refused_with(plan.pk, sent)
    failed = [e for e in new_entries(since) if e.plan_id == plan.pk and e.data.get("to") == "failed"]
    assert len(failed) == 1 and failed[0].data["error"] == "content_hash_mismatch", [e.data for e in new_entries(since)]


@pytest.fixture
def portal_raises(monkeypatch):
    """A portal whose every call raises `state["exc"]`."""
    state = {}

    class Raising:
        def __init__(self, portal, **kwargs):
            pass

        def run_steps(self, steps, **kwargs):
            raise state["exc"]

    monkeypatch.setattr(executor, "BitrixClient", Raising)
    return state


def test_a_portal_error_fails_the_plan_with_the_portals_description(approve, portal_raises):
    plan = approve()
    portal_raises["exc"] = BitrixError("ACCESS_DENIED", "Access denied for this user")
    assert executor.execute(plan_id=plan.pk).status == "failed"
    error = Plan.objects.get(pk=plan.pk).error
    assert (error["code"], error["message"]) == ("portal_error", "Access denied for this user")
    assert error["cause"]["code"] == "ACCESS_DENIED"


def test_a_lost_write_answer_audits_its_cause(approve, portal_raises):
    plan = approve()
    portal_raises["exc"] = OutcomeUnknown("READ_TIMEOUT", "The answer did not arrive")
    since = last_seq()
    assert executor.execute(plan_id=plan.pk).status == "needs_reconciliation"
    moved = [e for e in new_entries(since) if e.data.get("to") == "needs_reconciliation"]
    assert len(moved) == 1 and moved[0].data["error"] == "READ_TIMEOUT"


def test_a_portal_without_a_credential_fails_the_plan_with_a_clear_error(make_agent, portal):
    """The executor hands the client the credential read with the plan, or None when the portal
    has none (never a stand-in the client would try to use): the plan fails, nothing crashes."""
    from apps.portals.models import Credential

    Credential.objects.filter(portal=portal).delete()
    agent = make_agent("no-credential", portal=portal, write="auto")
    plan = services.plan_submit(agent=agent, portal=portal, steps=ADD).plan
    assert executor.execute(plan_id=plan.pk).status == "failed"
    plan = Plan.objects.get(pk=plan.pk)
    assert plan.error["cause"]["code"] == "CREDENTIAL_BROKEN"
    assert "no credential" in plan.error["message"]
    # nothing was sent: the attempt says so (not "the portal answered")
    assert [(a.outcome, a.detail["code"]) for a in plan.attempts.all()] == [("not_sent", "CREDENTIAL_BROKEN")]


# --- after sending (mutmut on branch mutate4) --------------------------------------------------


def test_a_lost_write_answer_needs_reconciliation_with_its_exact_error(approve, portal_raises):
    plan = approve()
    portal_raises["exc"] = OutcomeUnknown("READ_TIMEOUT", "The answer did not arrive")
    assert executor.execute(plan_id=plan.pk) == executor.Outcome("needs_reconciliation")
    plan = Plan.objects.get(pk=plan.pk)
    assert plan.error == {
        "code": "outcome_unknown",
        "message": "The call may have reached the portal but the answer was lost; check the portal and settle "
                   "the plan.",
        "cause": OutcomeUnknown("READ_TIMEOUT", "The answer did not arrive").as_dict()}
    assert plan.error["cause"]["code"] == "READ_TIMEOUT"


def executing_with(approve, details: list[dict]) -> Plan:
    """An approved plan moved to `executing` whose closed attempts carry `details`, in order."""
    plan = approve()
    Plan.objects.filter(pk=plan.pk).update(status="executing", attempt_count=len(details))
    ExecutionAttempt.objects.bulk_create([ExecutionAttempt(plan=plan, number=i, outcome=AttemptOutcome.NOT_SENT,
                                                           detail=detail)
                                          for i, detail in enumerate(details, start=1)])
    return Plan.objects.get(pk=plan.pk)


DEFERRED = {"code": "DEFERRED", "deferred": True}
REFUSED = {"code": "QUERY_LIMIT_EXCEEDED", "deferred": False}


@pytest.mark.parametrize(("deferred", "tries", "gives_up"), [
    (executor.MAX_DEFERRALS - 1, 0, False), (executor.MAX_DEFERRALS, 0, True),
    (0, executor.MAX_ATTEMPTS - 1, False), (0, executor.MAX_ATTEMPTS, True),
    (3, executor.MAX_ATTEMPTS - 1, False), (3, executor.MAX_ATTEMPTS, True),
])
def test_retries_are_counted_apart_from_deferrals(approve, deferred, tries, gives_up):
    """Deferrals by our own limiter (200) and tries at the portal (8) have their own budgets:
    the attempt just closed counts in its own budget."""
    plan = executing_with(approve, [REFUSED] * tries + [DEFERRED] * deferred)
    number = tries + deferred
    exc = Deferred("DEFERRED", "Held by our limiter", retry_after=0.5) if deferred else NotSent("QUERY_LIMIT_EXCEEDED")
    outcome = executor._retry_or_fail(plan, number, exc)
    if not gives_up:
        assert (outcome.status, outcome.attempt) == ("executing", number) and outcome.retry_in > 0
        assert Plan.objects.get(pk=plan.pk).status == "executing"
        return
    assert outcome == executor.Outcome("failed")
    assert Plan.objects.get(pk=plan.pk).error == {
        "code": "retries_exhausted", "message": f"Gave up after {tries} tries and {deferred} deferrals.",
        "cause": exc.as_dict()}


def test_a_deferral_waits_what_the_limiter_said_plus_at_most_a_second(approve):
    plan = executing_with(approve, [DEFERRED])
    waits = [executor._retry_or_fail(plan, 1, Deferred(retry_after=5.0)).retry_in for _ in range(300)]
    assert all(5.0 <= wait <= 6.0 for wait in waits)
    assert min(waits) < 5.2 and max(waits) > 5.8  # jittered over the whole second
    unsaid = [executor._retry_or_fail(plan, 1, Deferred()).retry_in for _ in range(300)]
    assert all(1.0 <= wait <= 2.0 for wait in unsaid) and min(unsaid) < 1.2 and max(unsaid) > 1.8


def test_a_refused_call_waits_the_backoff_of_its_try_and_at_least_what_the_portal_asked(approve):
    plan = executing_with(approve, [REFUSED])
    first = [executor._retry_or_fail(plan, 1, NotSent("QUERY_LIMIT_EXCEEDED")).retry_in for _ in range(100)]
    assert all(executor.BACKOFF_BASE / 2 <= wait <= executor.BACKOFF_BASE for wait in first)
    asked = executor._retry_or_fail(plan, 1, NotSent("QUERY_LIMIT_EXCEEDED", retry_after=90.0)).retry_in
    assert asked == 90.0


def test_a_try_after_deferrals_backs_off_as_the_plans_first_try(approve):
    plan = executing_with(approve, [DEFERRED, DEFERRED, REFUSED])
    waits = [executor._retry_or_fail(plan, 3, NotSent("QUERY_LIMIT_EXCEEDED")).retry_in for _ in range(100)]
    assert all(executor.BACKOFF_BASE / 2 <= wait <= executor.BACKOFF_BASE for wait in waits)


def test_a_refused_step_fails_the_plan_naming_only_that_step(approve, monkeypatch):
    refused = {"error": "NOT_FOUND", "error_description": "Not found"}
    answer = {"steps": {"first": {"result": {"ID": 1}, "error": None, "total": None, "next": None},
                        "second": {"result": None, "error": refused, "total": None, "next": None}}}

    class Answering:
        def __init__(self, portal, **kwargs):
            pass

        def run_steps(self, steps, **kwargs):
            return answer

    monkeypatch.setattr(executor, "BitrixClient", Answering)
    steps = [{"name": "first", "method": "crm.lead.get", "params": {"id": 1}},
             {"name": "second", "method": "crm.lead.get", "params": {"id": 2}}]
    plan = approve(steps, read="auto")
    since = last_seq()
    assert executor.execute(plan_id=plan.pk) == executor.Outcome("failed")
    plan = Plan.objects.get(pk=plan.pk)
    assert plan.result == answer
    assert plan.error == {"code": "step_failed", "message": "The portal refused a step.", "steps": {"second": refused}}
    moved = [e.data for e in new_entries(since) if e.data.get("to") == "failed"]
    assert len(moved) == 1 and moved[0]["failed_steps"] == ["second"], moved


def test_a_plan_sent_back_to_its_approvers_gets_a_full_ttl_from_now(approve, settings):
    plan = executing_with(approve, [])
    since = last_seq()
    before = timezone.now()
    assert executor._back_to_approvers(plan, {"call": {"TITLE", "ASSIGNED_BY_ID"}}) == executor.Outcome(
        "pending_approval")
    after = timezone.now()
    plan = Plan.objects.get(pk=plan.pk)
    assert plan.status == "pending_approval"
    ttl = datetime.timedelta(seconds=settings.PLAN_TTL)
    assert before + ttl <= plan.expires_at <= after + ttl
    assert not Approval.objects.filter(plan=plan, dismissed_at__isnull=True).exists()
    moved = [e.data for e in new_entries(since) if e.data.get("to") == "pending_approval"]
    assert len(moved) == 1 and moved[0]["changed_since_approval"] == {"call": ["ASSIGNED_BY_ID", "TITLE"]}
