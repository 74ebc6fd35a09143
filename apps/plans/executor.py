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

Auto-batching. A single-call plan with no stored preview (a plan whose records approvers saw runs
alone, so its re-read stays simple) is a *leader*: once it is `executing`, has passed its
preflight and recorded its attempt, it reserves one slot of the portal's bucket and then claims
up to 49 other `approved` single-call plans of the same portal (newest first: the oldest plans'
tasks are next in the queue and each will lead a batch of its own at once, instead of the workers
first wading through the tasks of plans already sent; no plan waits longer than its own task; a
`SELECT ... FOR UPDATE SKIP LOCKED` plus the usual conditional transition, so two leaders never
claim the same plan and each claimed plan is entered once). Each companion passes its own
preflight and records its own attempt; then all go as one `batch` (halt=0) on that one slot. Each
plan gets only its own command's answer, attempt outcome and audit entries; plans of different
agents may share a batch and see nothing of each other. A lost batch answer makes every write in
it `needs_reconciliation` and retries its reads; a batch the portal refused whole is retried plan
by plan; a command refused with a limit error is retried for its plan alone. Methods held until
their operating time resets are left out of a batch. Claimed plans' own queued tasks find them no
longer `approved` and do nothing. A leader that finds no companion sends its plain call.

The executor depends on the pure checks in `evaluation`, never on the services module.
"""

import datetime
import logging
import random
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from apps.approvals import previews
from apps.audit import registry as audit_events
from apps.audit.services import audit_collected, audit_record
from apps.bitrix import limiter
from apps.bitrix.address import is_rest3_only, method_path
from apps.bitrix.client import MAX_BATCH, BitrixClient
from apps.bitrix.errors import BitrixError, Deferred, NotSent, OutcomeUnknown, WaitForReset, classify_error
from apps.policy.decide import Step, decide
from apps.policy.errors import PolicyInputError
from apps.policy.selectors import grant_views_for
from apps.portals.models import Portal

from .choices import ApprovalDecision, AttemptOutcome, PlanStatus, Risk
from .evaluation import active_grants_json, content_hash, grant_views_from
from .models import Approval, ExecutionAttempt, Plan
from .states import StaleState, transition, transition_many

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
    #: retries of the other plans this run sent in its batch: (plan id, attempt, retry_in)
    companions: tuple = ()


def backoff(attempt: int, *, at_least: float | None = None) -> float:
    """Exponential backoff with equal jitter (half fixed, half random), never shorter than what the portal asked for."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempt - 1))
    delay = random.uniform(ceiling / 2, ceiling)
    return max(delay, at_least or 0.0)


def _fail(plan: Plan, code: str, message: str, **extra) -> Outcome:
    transition(plan=plan, source=S.EXECUTING, target=S.FAILED, data={"error": code},
               error={"code": code, "message": message, **extra})
    return Outcome(S.FAILED)


def _stale_approval():
    """Annotation: a live approval that saw other content than the plan's stored hash."""
    return Exists(Approval.objects.filter(plan=OuterRef("pk"), decision=ApprovalDecision.APPROVE)
                  .exclude(content_hash=OuterRef("content_hash")))


def _load(plan_id, attempt: int | None) -> Plan | None:
    """The plan with everything a run reads, in one query: its portal, credential, agent and
    preview; whether an approval saw other content (`stale_approval`), whether any method is held
    on the portal (`holds`) and whether other plans wait there to share a batch (`waiting`).
    A first run finds only an `approved` plan: most first deliveries on a busy portal find their
    plan sent already in another plan's batch, and answer from this one read."""
    plans = (Plan.objects.select_related("portal", "portal__credential", "portal__event_settings", "agent", "preview")
             .annotate(stale_approval=_stale_approval(), holds=limiter.holds_exist(), waiting=_others_waiting(),
                       grant_rows=active_grants_json())
             .filter(pk=plan_id))
    if attempt is None:
        plans = plans.filter(status=S.APPROVED)
    plan = plans.first()
    if plan is None:
        logger.info("execute_plan: plan %s does not exist or is not %s; nothing to do", plan_id,
                    S.APPROVED if attempt is None else "executing")
    return plan


def _others_waiting():
    """Annotation: other approved plans of the same portal that could join a batch."""
    return Exists(Plan.objects.filter(portal_id=OuterRef("portal_id"), status=S.APPROVED, preview__isnull=True)
                  .exclude(pk=OuterRef("pk")))


def _retry_of(plan: Plan, attempt: int) -> Plan | None:
    """The plan, if this run is the retry this executor scheduled for `attempt`."""
    last = plan.attempts.order_by("-number").first()
    legit = (
        plan.status == S.EXECUTING and last is not None and last.number == attempt == plan.attempt_count
        and last.outcome in (AttemptOutcome.NOT_SENT, AttemptOutcome.UNKNOWN)
    )
    if not legit:
        logger.info("execute_plan: retry %s of plan %s is stale; nothing to do", attempt, plan.pk)
        return None
    return plan


def _enter(plan: Plan) -> ExecutionAttempt | None:
    """First run: `approved` → `executing` with its first attempt recorded, in one transaction
    (one UPDATE, one INSERT, both audit entries in one insert). None if another run won."""
    number = plan.attempt_count + 1
    try:
        with transaction.atomic(), audit_collected():
            transition(plan=plan, source=S.APPROVED, target=S.EXECUTING, attempt_count=number)
            return _attempt_row(plan, number)
    except StaleState:
        return None


def _attempt_row(plan: Plan, number: int) -> ExecutionAttempt:
    attempt = ExecutionAttempt.objects.create(plan=plan, number=number)
    audit_record(action=audit_events.PLAN_ATTEMPT, portal=plan.portal, plan=plan,
                 data={"attempt": number, "methods": plan.methods})
    return attempt


def _refuse(plan: Plan, problem: tuple) -> Outcome:
    """A first run whose preflight failed: `executing` and at once `failed`, nothing sent."""
    code, message, extra = problem
    with transaction.atomic(), audit_collected():
        try:
            transition(plan=plan, source=S.APPROVED, target=S.EXECUTING)
        except StaleState:
            return Outcome("skipped")
        return _fail(plan, code, message, **extra)


def _check(plan: Plan, grants: dict | None = None) -> tuple[str, str, dict] | None:
    """Integrity and policy, checked again right before sending: None, or why the plan must
    fail (code, message, extra). `plan` carries the `stale_approval` annotation; `grants` caches
    each agent's grant views within one batch."""
    current = content_hash(portal_slug=plan.portal.slug, steps=plan.steps)
    if current != plan.content_hash or plan.stale_approval:
        return "content_hash_mismatch", "The plan's content is not what was approved; nothing was sent.", {}
    if not plan.agent.is_active or not plan.portal.is_active:
        return "policy_refused", "The agent or the portal was deactivated; nothing was sent.", {}
    grants = {} if grants is None else grants
    try:
        if plan.agent_id not in grants:
            grants[plan.agent_id] = (grant_views_from(plan.grant_rows) if hasattr(plan, "grant_rows")
                                     else grant_views_for(agent=plan.agent, portal=plan.portal))
        decision = decide(grants[plan.agent_id],
                          [Step(name=s["name"], method=s["method"], params=s.get("params") or {}) for s in plan.steps])
    except PolicyInputError as exc:
        return "policy_refused", exc.message, {}
    if not decision.allowed:
        return ("policy_refused", "The grants no longer allow this plan; nothing was sent.",
                {"reasons": list(decision.reasons), "outcome": decision.outcome})
    if decision.approvals_required > plan.approvals_required:
        return ("policy_refused", "The policy now needs more approvals than the plan had; nothing was sent.",
                {"approvals_required": decision.approvals_required})
    return None


def _preflight(plan: Plan, grants: dict | None = None) -> Outcome | None:
    """`_check` for a plan already `executing` (a retry): fails it when the check does."""
    problem = _check(plan, grants)
    if problem is None:
        return None
    code, message, extra = problem
    return _fail(plan, code, message, **extra)


def record_attempt(plan: Plan) -> ExecutionAttempt | None:
    """Record the next attempt before the portal is called; None if another run took that number."""
    number = plan.attempt_count + 1
    with transaction.atomic():
        claimed = Plan.objects.filter(pk=plan.pk, status=S.EXECUTING, attempt_count=number - 1).update(
            attempt_count=number, updated_at=timezone.now())
        if not claimed:
            return None
        attempt = _attempt_row(plan, number)
    plan.attempt_count = number
    return attempt


def close_attempt(attempt: ExecutionAttempt, outcome: str, detail: dict | None = None) -> None:
    """Record how the attempt ended (an `AttemptOutcome`)."""
    ExecutionAttempt.objects.filter(pk=attempt.pk).update(outcome=outcome, finished_at=timezone.now(), detail=detail)


def execute(*, plan_id, attempt: int | None = None) -> Outcome:
    plan = _load(plan_id, attempt)
    if plan is not None and attempt is not None:
        plan = _retry_of(plan, attempt)
    if plan is None:
        return Outcome("skipped")
    if attempt is None:  # checked before `executing`: a refused plan costs no attempt
        problem = _check(plan)
        if problem is not None:
            return _refuse(plan, problem)
        record = _enter(plan)
    else:
        stopped = _preflight(plan)
        if stopped:
            return stopped
        record = record_attempt(plan)
    if record is None:
        return Outcome("skipped")
    if batchable(plan):
        return _lead_batch(plan, record)
    try:
        changed = previews.changed_records(plan)
    except NotSent as exc:
        close_attempt(record, AttemptOutcome.NOT_SENT, _not_sent_detail(exc))
        return _retry_or_fail(plan, record.number, exc)
    if changed:
        close_attempt(record, AttemptOutcome.NOT_SENT, {"code": "changed_since_approval", "steps": sorted(changed)})
        return _back_to_approvers(plan, changed)
    return _send_alone(plan, record, _client(plan))


def _client(plan: Plan) -> BitrixClient:
    """The portal's client, with the credential `_start` read along with the plan."""
    portal = plan.portal
    credential = None
    if Portal.credential.is_cached(portal):
        try:
            credential = portal.credential
        except Portal.credential.RelatedObjectDoesNotExist:
            credential = None
    return BitrixClient(portal, credential=credential, auth_connector=_auth_connector(portal))


def _auth_connector(portal: Portal) -> str:
    """The source key of the portal's offline event bindings (read with the plan), which every
    write carries so our own changes are not queued back to us as events."""
    try:
        return portal.event_settings.auth_connector
    except ObjectDoesNotExist:
        return ""


def _not_sent_detail(exc: NotSent) -> dict:
    return {**exc.as_dict(), "deferred": isinstance(exc, Deferred)}


def _refused_outcome(exc: BitrixError) -> str:
    """How a failed attempt ends: an error that says the call did not run (a broken or missing
    credential, refused here or by the portal before running) leaves it `not_sent`; any other
    error came from the portal running or refusing the call, `answered`."""
    return AttemptOutcome.NOT_SENT if getattr(exc, "not_sent", False) else AttemptOutcome.ANSWERED


def _send_alone(plan: Plan, record: ExecutionAttempt, client: BitrixClient, *, reserved: bool = False) -> Outcome:
    """Send the plan's steps as they are (one call, or one batch with halt=1) and settle it."""
    try:
        answer = client.run_steps(plan.steps, reserved=reserved)
    except NotSent as exc:
        close_attempt(record, AttemptOutcome.NOT_SENT, _not_sent_detail(exc))
        return _retry_or_fail(plan, record.number, exc)
    except OutcomeUnknown as exc:
        close_attempt(record, AttemptOutcome.UNKNOWN, exc.as_dict())
        return _outcome_unknown(plan, record.number, exc)
    except BitrixError as exc:
        with transaction.atomic():  # the attempt's end and the plan's in one commit
            close_attempt(record, _refused_outcome(exc), exc.as_dict())
            return _fail(plan, "portal_error", exc.description or exc.code, cause=exc.as_dict())
    with transaction.atomic():
        close_attempt(record, AttemptOutcome.ANSWERED)
        return _settle(plan, answer)


def _outcome_unknown(plan: Plan, number: int, exc: BitrixError) -> Outcome:
    """The call may have run: a read is retried, a write waits for a human."""
    if plan.risk == Risk.READ:
        return _retry_or_fail(plan, number, exc)
    transition(plan=plan, source=S.EXECUTING, target=S.NEEDS_RECONCILIATION,
               data={"error": exc.code},
               error={"code": "outcome_unknown", "message": "The call may have reached the portal but the "
                      "answer was lost; check the portal and settle the plan.", "cause": exc.as_dict()})
    return Outcome(S.NEEDS_RECONCILIATION)


def _settle(plan: Plan, answer: dict) -> Outcome:
    """The portal answered every step: succeeded, or failed naming the steps it refused."""
    steps = answer.get("steps", {})
    failed = {name: step["error"] for name, step in steps.items() if step.get("error")}
    if failed:
        transition(plan=plan, source=S.EXECUTING, target=S.FAILED, data={"failed_steps": sorted(failed)},
                   result=answer, error={"code": "step_failed", "message": "The portal refused a step.",
                                         "steps": failed})
        return Outcome(S.FAILED)
    transition(plan=plan, source=S.EXECUTING, target=S.SUCCEEDED, result=answer)
    return Outcome(S.SUCCEEDED)


# --- auto-batching ------------------------------------------------------------------------------


def _batchable_step(steps: list, held: set[str] = frozenset()) -> bool:
    if not isinstance(steps, list) or len(steps) != 1 or not isinstance(steps[0], dict):
        return False
    name = method_path(str(steps[0].get("method", "")))
    return name.lower() != "batch" and not is_rest3_only(name) and name.lower() not in held


def batchable(plan: Plan) -> bool:
    """A single v2 call whose records nobody previewed (a previewed plan runs alone)."""
    return _batchable_step(plan.steps) and not previews.preview_of(plan)


def _lead_batch(leader: Plan, record: ExecutionAttempt) -> Outcome:
    """Reserve one slot, claim companions, send them all as one batch (or the leader alone)."""
    portal = leader.portal
    client = _client(leader)
    try:
        held = limiter.methods_held(portal_id=portal.pk) if getattr(leader, "holds", True) else set()
        if method_path(leader.steps[0]["method"]).lower() in held:
            return _send_alone(leader, record, client)  # the client defers it until the reset
        wait = limiter.limiter_reserve(portal_id=portal.pk, rate=portal.rate_per_second, burst=portal.burst,
                                       limit=limiter.max_sleep())
    except NotSent as exc:
        close_attempt(record, AttemptOutcome.NOT_SENT, _not_sent_detail(exc))
        return _retry_or_fail(leader, record.number, exc)
    if wait > 0:
        time.sleep(wait)
    claim_started = time.monotonic()
    try:
        others = getattr(leader, "waiting", True) or wait > 0  # plans approved while it waited may join
        members = [(leader, record), *(_claim_companions(leader, room=MAX_BATCH - 1, held=held) if others else [])]
    except BaseException:
        client.release_reserved_slot()
        raise
    if len(members) == 1:
        return _send_alone(leader, record, client, reserved=True)
    send_started = time.monotonic()
    outcome = _send_batch(client, members)
    logger.info("plan %s led a batch of %d plans: waited %.2f s for the slot, claimed in %.2f s, "
                "sent and settled in %.2f s", leader.pk, len(members), wait, send_started - claim_started,
                time.monotonic() - send_started)
    return outcome


def _claim_companions(leader: Plan, *, room: int, held: set[str]) -> list[tuple[Plan, ExecutionAttempt]]:
    """Up to `room` other approved single-call plans of the leader's portal, each entered into
    `executing` once, preflighted and with its attempt recorded. One transaction with the rows
    locked: one SELECT, the grants of each agent once, one UPDATE for all (status and attempt
    number), one INSERT of the attempts and one of the audit entries. A plan whose preflight
    fails is entered and failed on its own, as a lone plan would be."""
    grants: dict = {}
    with transaction.atomic(), audit_collected():
        rows = (Plan.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(portal_id=leader.portal_id, status=S.APPROVED, preview__isnull=True)
                .exclude(pk=leader.pk).select_related("agent")
                .annotate(stale_approval=_stale_approval(), grant_rows=active_grants_json())
                .order_by("-created_at")[: room * 2])  # newest first: see the module docstring
        chosen, refused = [], []
        for plan in rows:
            if len(chosen) >= room:
                break
            if not _batchable_step(plan.steps, held):
                continue
            plan.portal = leader.portal
            problem = _check(plan, grants)
            (chosen if problem is None else refused).append((plan, problem))
        # the rows are locked (PostgreSQL) or the database single-writer (SQLite): every move lands
        transition_many(moves=[(plan, {"batched": True}, {"attempt_count": plan.attempt_count + 1})
                               for plan, _problem in chosen], source=S.APPROVED, target=S.EXECUTING)
        attempts = ExecutionAttempt.objects.bulk_create(
            [ExecutionAttempt(plan=plan, number=plan.attempt_count) for plan, _problem in chosen])
        for plan, _problem in chosen:
            audit_record(action=audit_events.PLAN_ATTEMPT, portal=plan.portal, plan=plan,
                         data={"attempt": plan.attempt_count, "methods": plan.methods})
        for plan, (code, message, extra) in refused:
            transition(plan=plan, source=S.APPROVED, target=S.EXECUTING, data={"batched": True})
            _fail(plan, code, message, **extra)
    return [(plan, attempt) for (plan, _problem), attempt in zip(chosen, attempts, strict=True)]


def _send_batch(client: BitrixClient, members: list[tuple[Plan, ExecutionAttempt]]) -> Outcome:
    """One batch (halt=0) on the slot the leader reserved; each plan settled on its own answer."""
    commands = [(f"p{i}", plan.steps[0]["method"], plan.steps[0].get("params") or {})
                for i, (plan, _record) in enumerate(members)]
    outcomes: list[Outcome] = []
    try:
        result = client.batch(commands, halt=False, reserved=True)
    except NotSent as exc:
        with transaction.atomic(), audit_collected():
            for plan, record in members:
                close_attempt(record, AttemptOutcome.NOT_SENT, {**_not_sent_detail(exc), "batch": len(members)})
                outcomes.append(_retry_or_fail(plan, record.number, exc))
        return _leader_outcome(members, outcomes)
    except OutcomeUnknown as exc:
        with transaction.atomic(), audit_collected():
            for plan, record in members:
                close_attempt(record, AttemptOutcome.UNKNOWN, {**exc.as_dict(), "batch": len(members)})
                outcomes.append(_outcome_unknown(plan, record.number, exc))
        return _leader_outcome(members, outcomes)
    except BitrixError as exc:
        with transaction.atomic(), audit_collected():
            for plan, record in members:
                close_attempt(record, _refused_outcome(exc), {**exc.as_dict(), "batch": len(members)})
                outcomes.append(_fail(plan, "portal_error", exc.description or exc.code, cause=exc.as_dict()))
        return _leader_outcome(members, outcomes)
    with transaction.atomic(), audit_collected():
        outcomes = _settle_members(members, result)
    return _leader_outcome(members, outcomes)


def _settle_members(members: list[tuple[Plan, ExecutionAttempt]], result) -> list[Outcome]:
    """Every plan on its own command's answer. The plans the portal answered (the usual case)
    are settled together: one UPDATE closes their attempts, one per final state moves them
    (each with its own result and error); the rest go one by one (`_settle_member`)."""
    size = len(members)
    outcomes: list[Outcome | None] = []
    answered, moves = [], {S.SUCCEEDED: [], S.FAILED: []}
    for i, (plan, record) in enumerate(members):
        command = f"p{i}"
        error = result.errors.get(command)
        if command not in result.results and error is None or error is not None and issubclass(
                classify_error(None, error.get("error")), NotSent):
            outcomes.append(_settle_member(plan, record, result, command, size))
            continue
        entry = {"result": result.results.get(command), "error": error,
                 "total": result.totals.get(command), "next": result.nexts.get(command)}
        answer = {"steps": {plan.steps[0]["name"]: entry}}
        answered.append(record.pk)
        if error is not None:
            failed = {plan.steps[0]["name"]: error}
            moves[S.FAILED].append((plan, {"failed_steps": sorted(failed)}, {
                "result": answer, "error": {"code": "step_failed", "message": "The portal refused a step.",
                                            "steps": failed}}))
            outcomes.append(Outcome(S.FAILED))
        else:
            moves[S.SUCCEEDED].append((plan, None, {"result": answer}))
            outcomes.append(Outcome(S.SUCCEEDED))
    ExecutionAttempt.objects.filter(pk__in=answered).update(
        outcome=AttemptOutcome.ANSWERED, finished_at=timezone.now(), detail={"batch": size})
    for target, group in moves.items():
        transition_many(moves=group, source=S.EXECUTING, target=target)
    return outcomes


def _settle_member(plan: Plan, record: ExecutionAttempt, result, command: str, size: int) -> Outcome:
    """A plan whose command the batch answer did not settle (`_settle_members` settles the
    answered ones): missing from the answer, so nobody knows whether it ran, or refused before it
    ran (a limit), so it is retried alone."""
    error = result.errors.get(command)
    if error is None:  # neither answer nor error
        exc = OutcomeUnknown("BATCH_ANSWER_MISSING", "The batch answer held nothing for this call.")
        close_attempt(record, AttemptOutcome.UNKNOWN, {**exc.as_dict(), "batch": size})
        return _outcome_unknown(plan, record.number, exc)
    cls = classify_error(None, error.get("error"))
    method = method_path(plan.steps[0]["method"])
    if issubclass(cls, WaitForReset):
        retry_after = limiter.operating_time_reset_at(
            portal_id=plan.portal_id, method=method, time_info=result.times.get(command)) - time.time()
    else:
        retry_after = 1.0 / max(plan.portal.rate_per_second, 0.01)
    exc = cls(error.get("error"), error.get("error_description") or "", method=method,
              retry_after=max(retry_after, 1.0))
    close_attempt(record, AttemptOutcome.NOT_SENT, {**_not_sent_detail(exc), "batch": size})
    return _retry_or_fail(plan, record.number, exc)


def _leader_outcome(members, outcomes: list[Outcome]) -> Outcome:
    """The leader's outcome, carrying the retries the other plans need."""
    lead = outcomes[0]
    companions = tuple((str(plan.pk), out.attempt, out.retry_in)
                       for (plan, _record), out in zip(members[1:], outcomes[1:], strict=True)
                       if out.retry_in is not None)
    return Outcome(lead.status, retry_in=lead.retry_in, attempt=lead.attempt, companions=companions)


def _back_to_approvers(plan: Plan, changed: dict) -> Outcome:
    """A record changed after it was approved: nothing was sent; the approvals are dismissed and
    the plan waits for a fresh decision on what the record is now."""
    from apps.approvals.notify import notify_schedule

    now = timezone.now()
    with transaction.atomic():
        Approval.objects.filter(plan=plan).update(dismissed_at=now)
        transition(plan=plan, source=S.EXECUTING, target=S.PENDING_APPROVAL,
                   data={"changed_since_approval": {step: sorted(fields) for step, fields in changed.items()}},
                   expires_at=now + datetime.timedelta(seconds=settings.PLAN_TTL), approvers_told_at=None)
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
