"""A hypothesis state machine over the plan lifecycle (issue 12, point 4): agents submit reads,
writes and destructive calls; approvers approve and reject; agents cancel; plans expire; the
worker executes against a portal that answers, refuses a step, refuses before running, loses the
answer, or dies mid-call; a redelivered or retried task runs again; stale plans are recovered;
approvers settle unknown outcomes. After every step, for every plan:

- its status only moved along `apps.plans.states.TRANSITIONS`, and the audit log holds exactly
  one transition entry per status change, chained from `submitted` to the current status;
- while pending, fewer approvals than required are recorded (never more than required at all);
- a write whose answer was lost (or whose worker died mid-call) is never sent again;
- a terminal plan stays as it was.

The portal is the one thing outside the project, so it is the one thing replaced: a fake
`BitrixClient` that records what was sent."""

import datetime

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from apps.audit import registry as audit_events
from apps.audit.models import AuditEntry
from apps.bitrix.errors import NotSent, OutcomeUnknown
from apps.core.exceptions import ApplicationError
from apps.plans import executor, services
from apps.plans.choices import TERMINAL_STATES, ApprovalDecision
from apps.plans.models import Approval, Plan
from apps.plans.states import TRANSITIONS

pytestmark = pytest.mark.django_db

CALLS = {
    "read": ("crm.lead.get", {"id": 1}),
    "write": ("crm.lead.add", {"fields": {"TITLE": "machine"}}),
    "destructive": ("crm.lead.delete", {"id": 1}),
}


REACHED: set = set()


class WorkerDied(BaseException):
    """The worker process was killed while the request was in flight (nothing after it runs)."""


class Portal:
    """What the fake client does next, and every call it was given (by plan)."""

    def __init__(self):
        self.mode = "answer"
        self.sent: dict[str, int] = {}

    def client(self, portal, **kwargs):
        fake = self

        class FakeClient:
            def run_steps(self, steps, **kwargs):
                plan_id = fake.current
                if fake.mode == "not_sent":
                    raise NotSent("QUERY_LIMIT_EXCEEDED", "Too many requests", retry_after=1.0)
                fake.sent[plan_id] = fake.sent.get(plan_id, 0) + 1
                if fake.mode == "lose":
                    raise OutcomeUnknown("TIMEOUT", "The answer was lost.")
                if fake.mode == "die":
                    raise WorkerDied
                if fake.mode == "step_error":
                    return {"steps": {s["name"]: {"result": None, "error": {"error": "ERROR_CORE"}, "total": None,
                                                  "next": None} for s in steps}}
                return {"steps": {s["name"]: {"result": 1, "error": None, "total": None, "next": None}
                                  for s in steps}}

        return FakeClient()


@pytest.fixture
def lifecycle_world(monkeypatch, portal, make_agent, make_approver):
    fake = Portal()
    monkeypatch.setattr(executor, "BitrixClient", fake.client)
    # One plan per execution, so the fake portal's answer belongs to that plan; auto-batching of
    # several plans has its own tests (test_executor_batch.py, tests/services/test_batch_execution.py).
    monkeypatch.setattr(executor, "_claim_companions", lambda leader, **kwargs: [])
    agent = make_agent("machine-agent", portal=portal, read="auto", write="approve", destructive="approve2")
    approvers = [make_approver(name, portals=[portal]) for name in ("ann", "ben", "cid")]
    return fake, agent, approvers


def test_plan_lifecycle_state_machine(lifecycle_world, portal):
    fake, agent, approvers = lifecycle_world

    class PlanLifecycle(RuleBasedStateMachine):
        plans = Bundle("plans")

        def __init__(self):
            super().__init__()
            self.seen: dict[str, str] = {}  # plan id -> status after the last step
            self.lost: dict[str, int] = {}  # plan id -> sends when its answer was lost
            self.retries: dict[str, int] = {}  # plan id -> the attempt a scheduled retry names
            fake.sent = {}
            # each example starts from the same database: its writes are rolled back in teardown
            self._atomic = transaction.atomic()
            self._atomic.__enter__()

        def teardown(self):
            transaction.set_rollback(True)
            self._atomic.__exit__(None, None, None)

        def _ours(self, *statuses):
            # in submission order, so a replayed example picks the same plans (uuids are random)
            return [str(pk) for pk in Plan.objects.filter(pk__in=list(self.seen), status__in=statuses)
                    .order_by("created_at", "attempt_count").values_list("pk", flat=True)]

        def _pick(self, pick, *statuses):
            ours = self._ours(*statuses)
            return ours[pick % len(ours)] if ours else None

        # --- agents -------------------------------------------------------------------------------
        @rule(target=plans, risk=st.sampled_from(["read", "write", "write", "destructive"]))
        def submit(self, risk):
            method, params = CALLS[risk]
            plan = services.plan_submit(agent=agent, portal=portal,
                                        steps=[{"name": "call", "method": method, "params": params}]).plan
            self.seen[str(plan.pk)] = "submitted"  # the audit chain starts here
            return str(plan.pk)

        @rule(plan_id=plans)
        def cancel(self, plan_id):
            try:
                services.plan_cancel(plan_id=plan_id, agent=agent)
            except ApplicationError:
                pass

        # --- approvers ----------------------------------------------------------------------------
        def _decide(self, plan_id, who, approve):
            decision = ApprovalDecision.APPROVE if approve else ApprovalDecision.REJECT
            try:
                services.plan_decide(plan_id=plan_id, user=approvers[who], decision=decision)
            except ApplicationError:
                pass

        @rule(pick=st.integers(0, 99), who=st.integers(0, 2), approve=st.sampled_from([True, True, True, False]))
        @precondition(lambda self: self._ours("pending_approval"))
        def decide_a_pending_plan(self, pick, who, approve):
            plan_id = self._pick(pick, "pending_approval")
            if plan_id:
                self._decide(plan_id, who, approve)

        @rule(plan_id=plans, who=st.integers(0, 2), approve=st.booleans())
        def decide_any_plan(self, plan_id, who, approve):
            self._decide(plan_id, who, approve)

        @rule(pick=st.integers(0, 99), succeeded=st.booleans())
        @precondition(lambda self: self._ours("needs_reconciliation"))
        def reconcile(self, pick, succeeded):
            plan_id = self._pick(pick, "needs_reconciliation")
            if plan_id:
                services.plan_reconcile(plan_id=plan_id, user=approvers[0], succeeded=succeeded, comment="checked")

        @rule(plan_id=plans, succeeded=st.booleans())
        def reconcile_any_plan(self, plan_id, succeeded):
            try:
                services.plan_reconcile(plan_id=plan_id, user=approvers[1], succeeded=succeeded)
            except ApplicationError:
                pass

        # --- time ---------------------------------------------------------------------------------
        @rule(plan_id=plans)
        def expire(self, plan_id):
            Plan.objects.filter(pk=plan_id).update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
            services.plans_expire_due()

        @rule()
        def recover_stale(self):
            services.plans_recover_stale(now=timezone.now() + services.stale_after() + datetime.timedelta(seconds=5))

        # --- the worker ---------------------------------------------------------------------------
        def _run(self, plan_id, mode, attempt=None):
            fake.mode, fake.current = mode, plan_id
            try:
                outcome = executor.execute(plan_id=plan_id, attempt=attempt)
            except WorkerDied:
                self.lost[plan_id] = fake.sent.get(plan_id, 0)
                return
            if outcome.retry_in is not None:
                self.retries[plan_id] = outcome.attempt
            if outcome.status == "needs_reconciliation":
                self.lost[plan_id] = fake.sent.get(plan_id, 0)

        # a refused step weighs double: with it once in five, a run of 100 examples now and then
        # never saw a write fail, and the reachability guard below failed the suite by chance
        @rule(pick=st.integers(0, 99),
              mode=st.sampled_from(["answer", "step_error", "step_error", "not_sent", "lose", "die"]))
        @precondition(lambda self: self._ours("approved"))
        def execute_an_approved_plan(self, pick, mode):
            plan_id = self._pick(pick, "approved")
            if plan_id:
                self._run(plan_id, mode)

        @rule(plan_id=plans, mode=st.sampled_from(["answer", "lose"]))
        def redeliver(self, plan_id, mode):
            self._run(plan_id, mode)

        @rule(pick=st.integers(0, 99), mode=st.sampled_from(["answer", "not_sent", "lose", "die"]))
        @precondition(lambda self: any(p in self.retries for p in self._ours("executing")))
        def run_a_scheduled_retry(self, pick, mode):
            waiting = [p for p in self._ours("executing") if p in self.retries]
            plan_id = waiting[pick % len(waiting)]
            if plan_id:
                self._run(plan_id, mode, attempt=self.retries[plan_id])

        @rule(plan_id=plans, attempt=st.integers(1, 4))
        def redeliver_a_retry(self, plan_id, attempt):
            self._run(plan_id, "answer", attempt=attempt)

        # --- invariants ---------------------------------------------------------------------------
        @invariant()
        def statuses_follow_the_table_and_the_audit_log(self):
            for plan_id, before in self.seen.items():
                plan = Plan.objects.get(pk=plan_id)
                moves = [(e["data"]["from"], e["data"]["to"]) for e in AuditEntry.objects.filter(
                    plan_id=plan_id, action=audit_events.PLAN_TRANSITION).order_by("seq").values("data")]
                assert moves, "every plan has left submitted"
                assert moves[0][0] == "submitted"
                for (src, dst), (nxt, _) in zip(moves, moves[1:] + [(moves[-1][1], None)], strict=True):
                    assert dst in TRANSITIONS[src], f"{src} -> {dst} is not a transition"
                    assert dst == nxt, "the audit chain of transitions is broken"
                assert moves[-1][1] == plan.status, "one audit entry per status change"
                if before in TERMINAL_STATES:
                    assert plan.status == before, "a terminal plan moved"
                if before != "submitted" and before != plan.status:
                    assert (before in {m[0] for m in moves}), "the status moved without an audit entry"
                self.seen[plan_id] = plan.status
                REACHED.add((plan.risk, plan.status))

        @invariant()
        def approvals_never_exceed_what_is_required(self):
            for plan_id in self.seen:
                plan = Plan.objects.get(pk=plan_id)
                approvals = Approval.objects.filter(plan=plan, decision=ApprovalDecision.APPROVE).count()
                assert approvals <= plan.approvals_required
                if plan.status == "pending_approval":
                    assert approvals < plan.approvals_required

        @invariant()
        def a_lost_write_is_never_sent_again(self):
            for plan_id, sends in self.lost.items():
                plan = Plan.objects.get(pk=plan_id)
                if plan.risk != "read":
                    assert fake.sent.get(plan_id, 0) == sends, "a write whose answer was lost was sent again"
                    assert plan.status in ("executing", "needs_reconciliation", "succeeded", "failed")

        @invariant()
        def writes_are_sent_at_most_once(self):
            for plan_id, sends in fake.sent.items():
                if Plan.objects.get(pk=plan_id).risk != "read":
                    assert sends <= 1

    # derandomize: the same 100 examples every run, so the reachability guard below is a fact of
    # the code, not of a run's luck (random runs missed a write failing about one time in four)
    run_state_machine_as_test(PlanLifecycle, settings=settings(
        max_examples=100, stateful_step_count=40, deadline=None, derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]))
    # the machine got everywhere that matters (guards against rules that silently never fire)
    assert {("write", "needs_reconciliation"), ("write", "succeeded"), ("read", "succeeded"), ("write", "failed"),
            ("write", "rejected"), ("write", "expired"), ("write", "cancelled")} <= REACHED, sorted(REACHED)
