"""Plan services: every write to plans goes through here (HackSoft services, Zulip's do_*).

Each service owns its transaction, locks the plan row it decides on, moves it through
`states.transition` (which writes the audit entry), and queues execution through
`enqueue_execution` (on commit, so a worker never sees an uncommitted plan). Reads that several
writers share (content hash, policy decision) live in `evaluation`.
"""

import datetime
import json
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from apps.approvals.notify import notify_schedule
from apps.approvals.previews import preview_schedule
from apps.approvals.services import callback_url_check
from apps.audit import registry as audit_events
from apps.audit.services import audit_collected, audit_record
from apps.core import sql
from apps.core.exceptions import DeniedByPolicy, InvalidRequest, NotAllowed, NotFound, NotGranted
from apps.policy.decide import Decision
from apps.policy.models import PackGrant
from apps.portals.models import Portal

from . import executor, idempotency, states
from .choices import ApprovalDecision, AttemptOutcome, PlanStatus, Risk
from .evaluation import active_grants_json, content_hash, normalized_steps, plan_evaluate, status_after_submit
from .models import Approval, Plan
from .selectors import personal_refusal, user_may_decide
from .states import StaleState, transition

S = PlanStatus


def _portal_for_agent_sql(aggregate: str, json_object: str) -> str:
    """The active portal by slug if the agent holds any grant on it, with the agent's active grants
    on it as one JSON list (what `active_grants_json` annotates). `aggregate` wraps the rows'
    objects into that list and `json_object` builds each, in the database's own functions. Table
    names are the models'; every value is a parameter."""
    grant = PackGrant._meta.db_table
    row = (f"{json_object}('pack', g.pack, 'read_policy', g.read_policy, 'write_policy', g.write_policy, "
           "'destructive_policy', g.destructive_policy)")
    return (
        f"SELECT {_PORTAL.sql}, (SELECT {aggregate.format(row)} FROM {grant} g "  # noqa: S608  # nosec B608
        "WHERE g.agent_id = %s AND g.portal_id = p.id AND (g.expires_at IS NULL OR g.expires_at > %s)) "
        f"FROM {Portal._meta.db_table} p WHERE p.slug = %s AND p.is_active "
        f"AND EXISTS (SELECT 1 FROM {grant} e WHERE e.agent_id = %s AND e.portal_id = p.id)"
    )


_PORTAL = sql.Columns(Portal, alias="p")
_PORTAL_FOR_AGENT = {
    # text, as JSONField reads it (psycopg would decode json itself)
    "postgresql": _portal_for_agent_sql("JSON_AGG({})::text", "JSON_BUILD_OBJECT"),
    "sqlite": _portal_for_agent_sql("JSON_GROUP_ARRAY({})", "JSON_OBJECT"),
}


def portal_for_agent(*, agent, slug: str) -> Portal:
    """The portal by slug, if the agent holds any grant on it. A portal the agent has no grant on
    answers exactly like a portal that does not exist. Every submission starts here, so it is one
    fixed statement (apps.core.sql), not an ORM query with a subquery and an annotation; the
    ORM's version is `active_grants_json`, which the executor's reads use."""
    query = _PORTAL_FOR_AGENT.get(connection.vendor)
    if query is None:  # another database: the ORM's query
        portal = (Portal.objects.filter(slug=slug, is_active=True)
                  .filter(Exists(PackGrant.objects.filter(agent=agent, portal=OuterRef("pk"))))
                  .annotate(grant_rows=active_grants_json(agent=agent, portal=OuterRef("pk"))).first())
    else:
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        row = sql.fetchone(query, [agent.pk, now, slug, agent.pk])
        portal = None
        if row is not None:
            portal = _PORTAL.load(row[:-1])
            grants = row[-1]  # JSON text, or NULL when no grant is active (PostgreSQL's JSON_AGG)
            portal.grant_rows = json.loads(grants) if isinstance(grants, str | bytes) else grants
    if portal is None:
        raise NotFound(f"No portal {slug!r} is available to this agent.", field="portal")
    portal.grant_rows_agent = agent.pk  # the active grants came with it: the submission reads no more
    return portal


@dataclass(frozen=True)
class DryRun:
    """What a submission would do; nothing is created. `would_be` is None when it is refused."""

    allowed: bool
    outcome: str
    would_be: str | None
    risk: str
    approvals_required: int
    packs: list[str]
    reasons: list[str]
    missing: list[dict]
    checked: list[dict]
    steps: list[dict]


@dataclass(frozen=True)
class Submission:
    """What `plan_submit` did: made `plan`, replayed the plan an earlier request with the same
    idempotency key made (`replayed`), or only evaluated it (`dry_run`)."""

    plan: Plan | None = None
    replayed: bool = False
    dry_run: DryRun | None = None


def plan_submit(*, agent, portal: Portal, steps: list[dict], reason: str = "", callback_url: str = "",
                idempotency_key: str | None = None, request_hash: str | None = None,
                single_call: bool = False, dry_run: bool = False) -> Submission:
    """The whole submission. A dry run evaluates and creates nothing. Otherwise the idempotency key
    (if any) is claimed first: an earlier identical request's plan is replayed, a different one is
    422, one still in flight is 409. Then the policy is evaluated, a refusal raised, and the plan
    created; `auto` plans are approved at once and enqueued on commit, the rest wait for approvers
    until PLAN_TTL. The key binds to the plan in the creating transaction; a failed submission
    releases it. `request_hash` fingerprints the request as sent (needed with a key);
    `single_call` says it was sent as one {method, params}, so errors name `method`/`params`."""
    if dry_run:
        return Submission(dry_run=_dry_run(_evaluate(agent=agent, portal=portal, steps=steps, single_call=single_call)))
    record = None
    if idempotency_key is not None:
        if not request_hash:
            raise ValueError("An idempotent submission needs the request's hash.")
        claim = idempotency.claim(agent=agent, key=idempotency_key, request_hash=request_hash)
        if claim.replay is not None:
            return Submission(plan=claim.replay, replayed=True)
        record = claim.record
    try:
        decision = _evaluate(agent=agent, portal=portal, steps=steps, single_call=single_call)
        _raise_for_refusal(decision)
        callback_url_check(callback_url)
        plan = _plan_create(agent=agent, portal=portal, decision=decision, reason=reason,
                            callback_url=callback_url, record=record)
    except BaseException:
        if record is not None:
            idempotency.release(record)
        raise
    return Submission(plan=plan)


def _evaluate(*, agent, portal: Portal, steps: list[dict], single_call: bool) -> Decision:
    """The policy decision; for a single call, errors name `method`/`params`, not `steps.0.…`."""
    try:
        loaded = getattr(portal, "grant_rows_agent", None) == agent.pk  # by portal_for_agent
        return plan_evaluate(agent=agent, portal=portal, steps=steps,
                             grant_rows=(portal.grant_rows or []) if loaded else None)
    except InvalidRequest as exc:
        field = exc.extra.get("field", "")
        if single_call and isinstance(field, str) and field.startswith("steps.0."):
            exc.extra["field"] = field.removeprefix("steps.0.")
        elif single_call and field == "steps":
            exc.extra["field"] = "method"
        raise


def _dry_run(decision: Decision) -> DryRun:
    return DryRun(
        allowed=decision.allowed, outcome=decision.outcome,
        would_be=status_after_submit(decision).value if decision.allowed else None,
        risk=decision.risk, approvals_required=decision.approvals_required, packs=list(decision.packs),
        reasons=list(decision.reasons), missing=[dict(m) for m in decision.missing],
        checked=[dict(c) for c in decision.checked], steps=normalized_steps(decision),
    )


def _raise_for_refusal(decision: Decision) -> None:
    if decision.outcome == "not_granted":
        missing = [dict(m) for m in decision.missing]
        first = missing[0] if missing else {}
        packs = first.get("packs") or []
        raise NotGranted(
            f"No grant covers {first.get('method', 'that method')} on this portal"
            + (f"; the {packs[0]!r} pack would." if packs else "; no built-in pack covers it (ask for a custom pack)."),
            pack=packs[0] if packs else None, missing=missing,
        )
    if decision.outcome == "deny" or not decision.allowed:
        raise DeniedByPolicy("; ".join(decision.reasons) or None, risk=decision.risk)


def _plan_create(*, agent, portal: Portal, decision: Decision, reason: str, callback_url: str, record) -> Plan:
    steps = normalized_steps(decision)
    target = status_after_submit(decision)
    plan = Plan(
        agent=agent, portal=portal, risk=decision.risk, steps=steps, reason=reason, callback_url=callback_url,
        content_hash=content_hash(portal_slug=portal.slug, steps=steps),
        approvals_required=decision.approvals_required, packs=list(decision.packs),
        policy_reasons=list(decision.reasons),
        expires_at=timezone.now() + datetime.timedelta(seconds=settings.PLAN_TTL),
    )
    with transaction.atomic(), audit_collected():  # both entries in one insert
        audit_record(
            action=audit_events.PLAN_SUBMITTED, actor=agent, portal=portal, plan=plan,
            data={"risk": plan.risk, "methods": plan.methods, "outcome": decision.outcome,
                  "content_hash": plan.content_hash},
        )
        states.create(plan=plan, target=target, actor=agent, data={"policy": decision.outcome})
        if target == S.APPROVED:
            enqueue_execution(plan.pk)
        else:
            preview_schedule(plan)
            notify_schedule(plan)
        if record is not None:
            idempotency.bind(record, plan)
    return plan


def enqueue_execution(plan_id, *, attempt: int | None = None, countdown: float | None = None) -> None:
    """The one way execution is queued: the plan id (and the attempt a retry continues), published
    when the current transaction commits (at once outside one), so a worker never sees an
    uncommitted or rolled-back plan."""
    from .tasks import execute_plan

    kwargs = {} if attempt is None else {"attempt": attempt}
    execute_plan.apply_async_on_commit(args=(str(plan_id),), kwargs=kwargs, countdown=countdown)


def _locked_plan(plan_id) -> Plan:
    try:
        return Plan.objects.select_for_update().select_related("portal", "agent").get(pk=plan_id)
    except (Plan.DoesNotExist, ValidationError, ValueError):
        raise NotFound("No such plan.") from None


def user_may_approve(*, user, portal: Portal) -> bool:
    """The one rule of who may decide (apps.plans.selectors), shared with the admin's buttons."""
    return user_may_decide(user=user, portal=portal)


def _lock_for_approver(*, plan_id, user, status: str, stale: str, act: str) -> Plan:
    """Lock the plan, check it is still `status` and that `user` may `act` on its portal."""
    plan = _locked_plan(plan_id)
    if plan.status != status:
        raise StaleState(stale.format(status=plan.status), status=plan.status)
    if not user_may_approve(user=user, portal=plan.portal):
        raise NotAllowed(f"{user.get_username()} may not {act} plans on portal {plan.portal.slug}.")
    return plan


def plan_decide(*, plan_id, user, decision: str, comment: str = "", seen_hash: str | None = None) -> Plan:
    """One approver's decision. Approve needs `approvals_required` distinct approvers; any
    rejection ends the plan. The approver must be allowed on the plan's portal, must not own the
    submitting agent, and decides once. The approval records the content hash it saw."""
    if decision not in ApprovalDecision.values:
        raise InvalidRequest("decision must be approve or reject", field="decision")
    comment = (comment or "").strip()
    if len(comment) > 2000:
        raise InvalidRequest("The comment is longer than 2000 characters.", field="comment")
    with transaction.atomic():
        plan = _lock_for_approver(
            plan_id=plan_id, user=user, status=S.PENDING_APPROVAL, act="approve",
            stale="The plan is {status}; only pending plans can be decided.")
        refusal = personal_refusal(user=user, plan=plan)
        if refusal:
            raise NotAllowed(refusal)
        current_hash = content_hash(portal_slug=plan.portal.slug, steps=plan.steps)
        if current_hash != plan.content_hash or (seen_hash and seen_hash != plan.content_hash):
            raise StaleState("The plan content is not what was shown; reload it before deciding.")
        Approval.objects.create(plan=plan, user=user, decision=decision, comment=comment,
                                content_hash=plan.content_hash)
        audit_record(action=audit_events.PLAN_APPROVAL, actor=user, portal=plan.portal, plan=plan,
                     data={"decision": decision, "comment": comment, "content_hash": plan.content_hash})
        if decision == ApprovalDecision.REJECT:
            return transition(plan=plan, source=S.PENDING_APPROVAL, target=S.REJECTED, actor=user)
        approvals = plan.approvals.filter(decision=ApprovalDecision.APPROVE).count()
        if approvals >= plan.approvals_required:
            plan = transition(
                plan=plan, source=S.PENDING_APPROVAL, target=S.APPROVED, actor=user,
                data={"approvals": approvals},
                expires_at=timezone.now() + datetime.timedelta(seconds=settings.PLAN_TTL),
            )
            enqueue_execution(plan.pk)
        return plan


def plan_cancel(*, plan_id, agent) -> Plan:
    with transaction.atomic():
        plan = _locked_plan(plan_id)
        if plan.agent_id != agent.pk:
            raise NotFound("No such plan.")
        if plan.status not in (S.PENDING_APPROVAL, S.APPROVED):
            raise StaleState(f"The plan is {plan.status}; only plans not yet executing can be cancelled.",
                             status=plan.status)
        return transition(plan=plan, source=plan.status, target=S.CANCELLED, actor=agent)


def plans_expire_due(*, now=None) -> int:
    """Expire undecided plans, and approved plans nobody executed, after PLAN_TTL."""
    now = now or timezone.now()
    expired = 0
    due = Plan.objects.filter(status__in=[S.PENDING_APPROVAL, S.APPROVED], expires_at__lte=now).values_list(
        "pk", "status")
    for plan_id, status in due:
        with transaction.atomic():
            plan = Plan.objects.select_for_update().select_related("portal").filter(pk=plan_id).first()
            if plan is None or plan.status != status:
                continue
            transition(plan=plan, source=status, target=S.EXPIRED, data={"ttl": settings.PLAN_TTL})
            expired += 1
    return expired


def stale_after() -> datetime.timedelta:
    """How long a plan stays `executing` without a change before its worker counts as gone: the
    execute task is killed at its hard time limit; a minute more allows for the clocks of
    different hosts."""
    from .tasks import execute_plan

    return datetime.timedelta(seconds=execute_plan.time_limit + 60)


def plans_recover_stale(*, now=None) -> int:
    """Plans left `executing` by a worker that died. Nothing sent yet, or a read: run again.
    A write whose attempt is open may have reached the portal: needs_reconciliation."""
    now = now or timezone.now()
    recovered = 0
    stale = Plan.objects.filter(status=S.EXECUTING, updated_at__lte=now - stale_after()).select_related("portal")
    for plan in stale:
        with transaction.atomic():
            last = plan.attempts.select_for_update().order_by("-number").first()
            if last is not None and last.outcome != AttemptOutcome.OPEN:
                continue  # a retry is scheduled for it
            if last is not None and plan.risk != Risk.READ:
                executor.close_attempt(last, AttemptOutcome.UNKNOWN, {"code": "worker_lost"})
                transition(plan=plan, source=S.EXECUTING, target=S.NEEDS_RECONCILIATION,
                           data={"error": "worker_lost"},
                           error={"code": "outcome_unknown", "message": "The worker stopped while the call "
                                  "was in flight; check the portal and settle the plan."})
            else:
                if last is None:
                    last = executor.record_attempt(plan)
                    if last is None:
                        continue
                executor.close_attempt(
                    last, AttemptOutcome.NOT_SENT if plan.risk != Risk.READ else AttemptOutcome.UNKNOWN,
                    {"code": "worker_lost"})
                Plan.objects.filter(pk=plan.pk).update(updated_at=now)
                enqueue_execution(plan.pk, attempt=last.number)
            recovered += 1
    return recovered


def plan_reconcile(*, plan_id, user, succeeded: bool, comment: str = "") -> Plan:
    """An approver settles a plan whose outcome was unknown, after checking the portal."""
    with transaction.atomic():
        plan = _lock_for_approver(
            plan_id=plan_id, user=user, status=S.NEEDS_RECONCILIATION, act="settle",
            stale="The plan is {status}, not needs_reconciliation.")
        audit_record(action=audit_events.PLAN_RECONCILED, actor=user, portal=plan.portal, plan=plan,
                     data={"succeeded": succeeded, "comment": comment})
        error = plan.error
        if not succeeded:
            error = {**(plan.error or {}), "reconciled": "failed", "comment": comment}
        return transition(plan=plan, source=S.NEEDS_RECONCILIATION,
                          target=S.SUCCEEDED if succeeded else S.FAILED, actor=user, error=error)
