"""The plan state machine: the only writer of `Plan.status` (house rule 2).

A transition is a conditional `UPDATE ... WHERE status = <expected>` (django-fsm's idea without the
dependency): when no row changes, someone else won and `StaleState` is raised. Each transition
writes one audit entry in the same transaction (house rule 3).
"""

from django.db import transaction
from django.db.models import Case, Value, When
from django.utils import timezone

from apps.audit import registry as audit_events
from apps.audit.services import audit_record
from apps.core import sql, wakeup
from apps.core.exceptions import Conflict

from .choices import FINAL_FOR_WAIT, TERMINAL_STATES, PlanStatus
from .models import Plan

S = PlanStatus
_PLAN = sql.Columns(Plan)  # every submission's INSERT

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
    the same UPDATE (result, error, expires_at ...). Returns the plan as stored afterwards.

    No savepoint: `StaleState` is raised after the block, when nothing was written, so a caller
    may catch it and go on inside its own transaction."""
    if not can_transition(source, target):
        raise InvalidTransition(f"{source} → {target} is not a plan transition")
    now = timezone.now()
    if target in TERMINAL_STATES:
        fields.setdefault("finished_at", now)
    with transaction.atomic(savepoint=False):
        changed = Plan.objects.filter(pk=plan.pk, status=source).update(status=target, updated_at=now, **fields)
        if changed:
            _recorded(plan, source, target, actor, data)
    if not changed:
        raise StaleState(f"The plan is no longer {source}.", plan_id=str(plan.pk))
    for key, value in fields.items():
        setattr(plan, key, value)
    plan.status, plan.updated_at = target, now
    return plan


def _recorded(plan: Plan, source: str, target: str, actor, data: dict | None) -> None:
    """The transition's audit entry, and the agent's callback once the plan is final."""
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


def create(*, plan: Plan, target: str, actor=None, data: dict | None = None) -> Plan:
    """Store a new (unsaved) plan that enters `submitted` and moves on to `target` at once: one
    INSERT in `target`, with the transition recorded exactly as a separate move would be."""
    if not can_transition(S.SUBMITTED, target):
        raise InvalidTransition(f"{S.SUBMITTED} → {target} is not a plan transition")
    with transaction.atomic(savepoint=False):
        plan.status = target
        _PLAN.insert([plan])  # Plan.save(force_insert=True) as one fixed statement (apps.core.sql)
        _recorded(plan, S.SUBMITTED, target, actor, data)
    return plan


def transition_many(*, moves: list[tuple[Plan, dict | None, dict]], source: str, target: str, actor=None) -> None:
    """Move several plans from `source` to `target` in one conditional UPDATE; `moves` holds
    (plan, audit data, columns) per plan, the columns set per plan (a CASE on the key when they
    differ). All move or none: a plan no longer in `source` raises `StaleState` and the caller's
    transaction rolls back (so call this inside one, with the rows locked)."""
    if not moves:
        return
    if not can_transition(source, target):
        raise InvalidTransition(f"{source} → {target} is not a plan transition")
    now = timezone.now()
    columns: dict[str, object] = {"status": target, "updated_at": now}
    if target in TERMINAL_STATES:
        columns["finished_at"] = now
    names = sorted({name for _plan, _data, fields in moves for name in fields})
    for name in names:
        field = Plan._meta.get_field(name)
        columns[name] = Case(*[When(pk=plan.pk, then=Value(fields.get(name, getattr(plan, name)), output_field=field))
                               for plan, _data, fields in moves], output_field=field)
    with transaction.atomic(savepoint=False):
        changed = Plan.objects.filter(pk__in=[plan.pk for plan, _d, _f in moves], status=source).update(**columns)
        if changed != len(moves):
            raise StaleState(f"{len(moves) - changed} of the plans are no longer {source}.")
        for plan, data, fields in moves:
            for key, value in fields.items():
                setattr(plan, key, value)
            plan.updated_at = now
            if target in TERMINAL_STATES:
                plan.finished_at = now
            _recorded(plan, source, target, actor, data)
            plan.status = target
