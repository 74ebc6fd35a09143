"""Runs one approved plan against its portal.

The task (`apps.plans.tasks.execute_plan`) is a thin adapter around `execute()`. The rules:
- `executing` is entered once (a conditional update); a duplicate or redelivered task finds the
  plan no longer `approved` and does nothing, unless it is the retry this executor scheduled for
  the attempt it names.
- What runs is exactly what was approved: the content hash is recomputed and compared with the
  plan's and every approval's; the policy is applied again (a grant revoked, expired or tightened
  after approval stops the plan).
- The attempt is recorded before the portal is called (house rule 6).
- A record the approvers saw (its pre-image, `apps.approvals.previews`) is read again right
  before sending; if it changed, nothing is sent: the plan goes back to its approvers with their
  approvals dismissed and the new pre-image shown.
- Calls the portal refused without running them are retried with backoff and jitter (`execute()`
  says when; the task queues the retry through `services.enqueue_execution`); reads are retried
  on timeouts and 5xx too; a write whose outcome is unknown is never re-sent: the plan becomes
  `needs_reconciliation` for a human.
- A plan whose worker died is picked up by `services.plans_recover_stale` with the attempt
  helpers below.

The executor depends on the pure checks in `evaluation`, never on the services module.
"""

import datetime
import logging
import random
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.approvals import previews
from apps.audit import registry as audit_events
from apps.audit.services import audit_record
from apps.bitrix.client import BitrixClient
from apps.bitrix.errors import BitrixError, Deferred, NotSent, OutcomeUnknown
from apps.policy.errors import PolicyInputError

from .choices import ApprovalDecision, AttemptOutcome, PlanStatus, Risk
from .evaluation import content_hash, plan_evaluate
from .models import Approval, ExecutionAttempt, Plan
from .states import StaleState, transition

logger = logging.getLogger(__name__)
S = PlanStatus

MAX_ATTEMPTS = 8  # tries that reached (or tried to reach) the portal
MAX_DEFERRALS = 200  # waits our own limiter imposed: a saturated portal drains ~2 req/s, so a deep backlog waits
BACKOFF_BASE = 2.0  # seconds
BACKOFF_CAP = 300.0  # well under any broker visibility timeout


@dataclass(frozen=True)
class Outcome:
    status: str  # the plan status after this run, or "skipped"
    retry_in: float | None = None
    attempt: int | None = None


def backoff(attempt: int, *, at_least: float | None = None) -> float:
    """Exponential backoff with equal jitter (half fixed, half random), never shorter than what the portal asked for."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempt - 1))
    delay = random.uniform(ceiling / 2, ceiling)
    return max(delay, at_least or 0.0)


def _fail(plan: Plan, code: str, message: str, **extra) -> Outcome:
    transition(plan=plan, source=S.EXECUTING, target=S.FAILED, data={"error": code},
               error={"code": code, "message": message, **extra})
    return Outcome(S.FAILED)


def _start(plan_id, attempt: int | None) -> Plan | None:
    """Enter `executing` (first run) or confirm this is the retry we scheduled. None = do nothing."""
    plan = Plan.objects.select_related("portal", "agent").filter(pk=plan_id).first()
    if plan is None:
        logger.warning("execute_plan: plan %s does not exist", plan_id)
        return None
    if attempt is None:
        if plan.status != S.APPROVED:
            logger.info("execute_plan: plan %s is %s; nothing to do", plan_id, plan.status)
            return None
        try:
            return transition(plan=plan, source=S.APPROVED, target=S.EXECUTING)
        except StaleState:
            return None
    last = plan.attempts.order_by("-number").first()
    legit = (
        plan.status == S.EXECUTING and last is not None and last.number == attempt == plan.attempt_count
        and last.outcome in (AttemptOutcome.NOT_SENT, AttemptOutcome.UNKNOWN)
    )
    if not legit:
        logger.info("execute_plan: retry %s of plan %s is stale; nothing to do", attempt, plan_id)
        return None
    return plan


def _preflight(plan: Plan) -> Outcome | None:
    """Integrity and policy, checked again right before sending."""
    current = content_hash(portal_slug=plan.portal.slug, steps=plan.steps)
    approved_hashes = list(
        plan.approvals.filter(decision=ApprovalDecision.APPROVE).values_list("content_hash", flat=True))
    if current != plan.content_hash or any(h != current for h in approved_hashes):
        return _fail(plan, "content_hash_mismatch", "The plan's content is not what was approved; nothing was sent.")
    if not plan.agent.is_active or not plan.portal.is_active:
        return _fail(plan, "policy_refused", "The agent or the portal was deactivated; nothing was sent.")
    try:
        decision = plan_evaluate(agent=plan.agent, portal=plan.portal, steps=plan.steps)
    except PolicyInputError as exc:
        return _fail(plan, "policy_refused", exc.message)
    if not decision.allowed:
        return _fail(plan, "policy_refused", "The grants no longer allow this plan; nothing was sent.",
                     reasons=list(decision.reasons), outcome=decision.outcome)
    if decision.approvals_required > plan.approvals_required:
        return _fail(plan, "policy_refused", "The policy now needs more approvals than the plan had; nothing was sent.",
                     approvals_required=decision.approvals_required)
    return None


def record_attempt(plan: Plan) -> ExecutionAttempt | None:
    """Record the next attempt before the portal is called; None if another run took that number."""
    number = plan.attempt_count + 1
    with transaction.atomic():
        claimed = Plan.objects.filter(pk=plan.pk, status=S.EXECUTING, attempt_count=number - 1).update(
            attempt_count=number, updated_at=timezone.now())
        if not claimed:
            return None
        attempt = ExecutionAttempt.objects.create(plan=plan, number=number)
        audit_record(action=audit_events.PLAN_ATTEMPT, portal=plan.portal, plan=plan,
                     data={"attempt": number, "methods": plan.methods})
    plan.attempt_count = number
    return attempt


def close_attempt(attempt: ExecutionAttempt, outcome: str, detail: dict | None = None) -> None:
    """Record how the attempt ended (an `AttemptOutcome`)."""
    ExecutionAttempt.objects.filter(pk=attempt.pk).update(outcome=outcome, finished_at=timezone.now(), detail=detail)


def execute(*, plan_id, attempt: int | None = None) -> Outcome:
    plan = _start(plan_id, attempt)
    if plan is None:
        return Outcome("skipped")
    stopped = _preflight(plan)
    if stopped:
        return stopped
    record = record_attempt(plan)
    if record is None:
        return Outcome("skipped")
    try:
        changed = previews.changed_records(plan)
    except NotSent as exc:
        close_attempt(record, AttemptOutcome.NOT_SENT, {**exc.as_dict(), "deferred": isinstance(exc, Deferred)})
        return _retry_or_fail(plan, record.number, exc)
    if changed:
        close_attempt(record, AttemptOutcome.NOT_SENT, {"code": "changed_since_approval", "steps": sorted(changed)})
        return _back_to_approvers(plan, changed)
    try:
        answer = BitrixClient(plan.portal).run_steps(plan.steps)
    except NotSent as exc:
        close_attempt(record, AttemptOutcome.NOT_SENT, {**exc.as_dict(), "deferred": isinstance(exc, Deferred)})
        return _retry_or_fail(plan, record.number, exc)
    except OutcomeUnknown as exc:
        close_attempt(record, AttemptOutcome.UNKNOWN, exc.as_dict())
        if plan.risk == Risk.READ:
            return _retry_or_fail(plan, record.number, exc)
        transition(plan=plan, source=S.EXECUTING, target=S.NEEDS_RECONCILIATION,
                   data={"error": exc.code},
                   error={"code": "outcome_unknown", "message": "The call may have reached the portal but the "
                          "answer was lost; check the portal and settle the plan.", "cause": exc.as_dict()})
        return Outcome(S.NEEDS_RECONCILIATION)
    except BitrixError as exc:
        close_attempt(record, AttemptOutcome.ANSWERED, exc.as_dict())
        return _fail(plan, "portal_error", exc.description or exc.code, cause=exc.as_dict())
    close_attempt(record, AttemptOutcome.ANSWERED)
    steps = answer.get("steps", {})
    failed = {name: step["error"] for name, step in steps.items() if step.get("error")}
    if failed:
        transition(plan=plan, source=S.EXECUTING, target=S.FAILED, data={"failed_steps": sorted(failed)},
                   result=answer, error={"code": "step_failed", "message": "The portal refused a step.",
                                         "steps": failed})
        return Outcome(S.FAILED)
    transition(plan=plan, source=S.EXECUTING, target=S.SUCCEEDED, result=answer)
    return Outcome(S.SUCCEEDED)


def _back_to_approvers(plan: Plan, changed: dict) -> Outcome:
    """A record changed after it was approved: nothing was sent; the approvals are dismissed and
    the plan waits for a fresh decision on what the record is now."""
    from apps.approvals.notify import notify_schedule

    now = timezone.now()
    with transaction.atomic():
        Approval.objects.filter(plan=plan).update(dismissed_at=now)
        transition(plan=plan, source=S.EXECUTING, target=S.PENDING_APPROVAL,
                   data={"changed_since_approval": {step: sorted(fields) for step, fields in changed.items()}},
                   expires_at=now + datetime.timedelta(seconds=settings.PLAN_TTL))
        notify_schedule(plan)
    return Outcome(S.PENDING_APPROVAL)


def _retry_or_fail(plan: Plan, number: int, exc: BitrixError) -> Outcome:
    """Retry later or give up. Deferrals by our own limiter are not tries: they wait exactly as
    long as the shared bucket says (plus a little jitter) and have their own, larger budget."""
    deferrals = plan.attempts.filter(detail__deferred=True).count()
    tries = number - deferrals
    if tries >= MAX_ATTEMPTS or deferrals >= MAX_DEFERRALS:
        return _fail(plan, "retries_exhausted", f"Gave up after {tries} tries and {deferrals} deferrals.",
                     cause=exc.as_dict())
    if isinstance(exc, Deferred):
        return Outcome(S.EXECUTING, retry_in=(exc.retry_after or 1.0) + random.uniform(0, 1), attempt=number)
    return Outcome(S.EXECUTING, retry_in=backoff(max(tries, 1), at_least=exc.retry_after), attempt=number)
