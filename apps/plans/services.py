"""Plan services: every write to plans goes through here (HackSoft services, Zulip's do_*).

Each service owns its transaction, locks the plan row it decides on, moves it through
`states.transition` (which writes the audit entry), and enqueues execution with
`delay_on_commit` so a worker never sees an uncommitted plan.
"""

import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.approvals.notify import notify_schedule
from apps.approvals.previews import preview_schedule
from apps.approvals.services import callback_url_check
from apps.audit import registry as audit_events
from apps.audit.services import audit_record
from apps.core.canonical import sha256_hex
from apps.core.exceptions import DeniedByPolicy, InvalidRequest, NotFound, NotGranted, PermissionDenied
from apps.policy.decide import Decision, Step, decide
from apps.policy.selectors import grant_views_for
from apps.portals.models import Portal

from .choices import Decision as ApprovalDecision
from .choices import PlanStatus
from .models import Approval, Plan
from .states import StaleState, transition

S = PlanStatus
APPROVALS_FOR = {"auto": 0, "approve": 1, "approve2": 2}


def content_hash(*, portal_slug: str, steps: list[dict]) -> str:
    """What an approval binds to: SHA-256 of the canonical JSON of portal + steps."""
    return sha256_hex({"portal": portal_slug, "steps": steps})


def portal_for_agent(*, agent, slug: str) -> Portal:
    """The portal by slug, if the agent holds any grant on it. A portal the agent has no grant on
    answers exactly like a portal that does not exist."""
    portal = Portal.objects.filter(slug=slug, is_active=True, grants__agent=agent).distinct().first()
    if portal is None:
        raise NotFound(f"No portal {slug!r} is available to this agent.", field="portal")
    return portal


def plan_evaluate(*, agent, portal: Portal, steps: list[dict]) -> Decision:
    """Apply the pure policy to the agent's current grants. Raises PolicyInputError on bad steps."""
    grants = grant_views_for(agent=agent, portal=portal)
    return decide(grants, [Step(name=s["name"], method=s["method"], params=s.get("params") or {}) for s in steps])


def raise_for_refusal(decision: Decision) -> None:
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


def normalized_steps(decision: Decision) -> list[dict]:
    return [{"name": s.name, "method": s.method, "params": s.params} for s in decision.steps]


def plan_submit(*, agent, portal: Portal, steps: list[dict], reason: str = "", callback_url: str = "",
                decision: Decision | None = None, on_created=None) -> Plan:
    """Create a plan the policy allows. `auto` plans are approved at once and enqueued on commit;
    the rest wait for approvers until PLAN_TTL. `on_created(plan)` runs inside the transaction
    (the idempotency record binds to the plan there)."""
    decision = decision or plan_evaluate(agent=agent, portal=portal, steps=steps)
    raise_for_refusal(decision)
    callback_url_check(callback_url)
    steps = normalized_steps(decision)
    now = timezone.now()
    with transaction.atomic():
        plan = Plan.objects.create(
            agent=agent, portal=portal, status=S.SUBMITTED, risk=decision.risk, steps=steps,
            reason=reason, callback_url=callback_url,
            content_hash=content_hash(portal_slug=portal.slug, steps=steps),
            approvals_required=decision.approvals_required, packs=list(decision.packs),
            policy_reasons=list(decision.reasons),
            expires_at=now + datetime.timedelta(seconds=settings.PLAN_TTL),
        )
        audit_record(
            action=audit_events.PLAN_SUBMITTED, actor=agent, portal=portal, plan=plan,
            data={"risk": plan.risk, "methods": plan.methods, "outcome": decision.outcome,
                  "content_hash": plan.content_hash},
        )
        if decision.approvals_required == 0:
            transition(plan=plan, source=S.SUBMITTED, target=S.APPROVED, actor=agent, data={"policy": "auto"})
            enqueue_execution(plan)
        else:
            transition(plan=plan, source=S.SUBMITTED, target=S.PENDING_APPROVAL, actor=agent,
                       data={"policy": decision.outcome})
            preview_schedule(plan)
            notify_schedule(plan)
        if on_created:
            on_created(plan)
    return plan


def enqueue_execution(plan: Plan) -> None:
    from .tasks import execute_plan

    execute_plan.delay_on_commit(str(plan.pk))


def _locked_plan(plan_id) -> Plan:
    try:
        return Plan.objects.select_for_update().select_related("portal", "agent").get(pk=plan_id)
    except (Plan.DoesNotExist, ValidationError, ValueError):
        raise NotFound("No such plan.")


def user_may_approve(*, user, portal: Portal) -> bool:
    return (
        user.is_active
        and user.has_perm("plans.approve_plan")
        and portal.approvers.filter(pk=user.pk).exists()
    )


def _lock_for_approver(*, plan_id, user, status: str, stale: str, act: str) -> Plan:
    """Lock the plan, check it is still `status` and that `user` may `act` on its portal."""
    plan = _locked_plan(plan_id)
    if plan.status != status:
        raise StaleState(stale.format(status=plan.status), status=plan.status)
    if not user_may_approve(user=user, portal=plan.portal):
        raise PermissionDenied(f"{user.get_username()} may not {act} plans on portal {plan.portal.slug}.")
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
        if plan.agent.owner_id is not None and plan.agent.owner_id == user.pk:
            raise PermissionDenied("The owner of the submitting agent cannot decide its plans.")
        if plan.approvals.filter(user=user).exists():
            raise PermissionDenied("You have already decided this plan; a second approver is needed.")
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
            enqueue_execution(plan)
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
