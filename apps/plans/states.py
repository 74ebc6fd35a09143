"""The plan state machine: the only writer of `Plan.status` (house rule 2).

A transition is a conditional `UPDATE ... WHERE status = <expected>` (django-fsm's idea without the
dependency): when no row changes, someone else won and `StaleState` is raised. Each transition
writes one audit entry in the same transaction (house rule 3).
"""

from django.db import transaction
from django.utils import timezone

from apps.audit import registry as audit_events
from apps.audit.services import audit_record
from apps.core import wakeup
from apps.core.exceptions import Conflict

from .choices import FINAL_FOR_WAIT, TERMINAL_STATES, PlanStatus
from .models import Plan

S = PlanStatus

TRANSITIONS: dict[str, frozenset[str]] = {
    S.SUBMITTED: frozenset({S.PENDING_APPROVAL, S.APPROVED}),
    S.PENDING_APPROVAL: frozenset({S.APPROVED, S.REJECTED, S.EXPIRED, S.CANCELLED}),
    S.APPROVED: frozenset({S.EXECUTING, S.EXPIRED, S.CANCELLED}),
    # back to the approvers when a record changed after they saw it (nothing was sent)
    S.EXECUTING: frozenset({S.SUCCEEDED, S.FAILED, S.NEEDS_RECONCILIATION, S.PENDING_APPROVAL}),
    S.NEEDS_RECONCILIATION: frozenset({S.SUCCEEDED, S.FAILED}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
    S.REJECTED: frozenset(),
    S.EXPIRED: frozenset(),
    S.CANCELLED: frozenset(),
}


class InvalidTransition(Exception):
    """A programming error: the code asked for a move the table does not have."""


class StaleState(Conflict):
    """The plan was not in the expected state any more: another actor got there first."""

    default_message = "The plan has already moved on; reload it."


def can_transition(source: str, target: str) -> bool:
    return target in TRANSITIONS.get(source, frozenset())


def transition(*, plan: Plan, source: str, target: str, actor=None, data: dict | None = None, **fields) -> Plan:
    """Move `plan` from `source` to `target` and record it. `fields` are other Plan columns set in
    the same UPDATE (result, error, expires_at ...). Returns the plan as stored afterwards."""
    if not can_transition(source, target):
        raise InvalidTransition(f"{source} → {target} is not a plan transition")
    now = timezone.now()
    if target in TERMINAL_STATES:
        fields.setdefault("finished_at", now)
    with transaction.atomic():
        changed = Plan.objects.filter(pk=plan.pk, status=source).update(status=target, updated_at=now, **fields)
        if not changed:
            raise StaleState(f"The plan is no longer {source}.", plan_id=str(plan.pk))
        audit_record(
            action=audit_events.PLAN_TRANSITION, actor=actor, portal=plan.portal, plan=plan,
            data={"from": source, "to": target, **(data or {})},
        )
        if target in FINAL_FOR_WAIT:
            wakeup.notify_on_commit(wakeup.plan_key(plan.pk))  # answers `?wait=` requests after commit
        if target in TERMINAL_STATES and plan.callback_url:
            from apps.approvals.services import callback_schedule

            plan.status = target
            callback_schedule(plan=plan)
    for key, value in fields.items():
        setattr(plan, key, value)
    plan.status, plan.updated_at = target, now
    return plan
