"""Every allowed and every refused transition of the plan state machine."""

import itertools

import pytest

from apps.audit.models import AuditEntry
from apps.plans.choices import PlanStatus
from apps.plans.models import Plan
from apps.plans.states import TRANSITIONS, InvalidTransition, StaleState, can_transition, transition

pytestmark = pytest.mark.django_db
ALL = list(PlanStatus.values)
ALLOWED = sorted((s, t) for s, targets in TRANSITIONS.items() for t in targets)
REFUSED = sorted((s, t) for s, t in itertools.product(ALL, ALL) if t not in TRANSITIONS[s])


def test_the_table_is_the_documented_lifecycle():
    assert ALLOWED == sorted([
        ("submitted", "pending_approval"), ("submitted", "approved"),
        ("pending_approval", "approved"), ("pending_approval", "rejected"), ("pending_approval", "expired"),
        ("pending_approval", "cancelled"),
        ("approved", "executing"), ("approved", "expired"), ("approved", "cancelled"),
        ("executing", "succeeded"), ("executing", "failed"), ("executing", "needs_reconciliation"),
        ("executing", "pending_approval"),  # a record changed after approval: back to the approvers
        ("needs_reconciliation", "succeeded"), ("needs_reconciliation", "failed"),
    ])


@pytest.fixture
def make_plan(agent, portal):
    def make(status):
        return Plan.objects.create(agent=agent, portal=portal, status=status, risk="read",
                                   steps=[{"name": "call", "method": "user.current", "params": {}}],
                                   content_hash="0" * 64)
    return make


@pytest.mark.parametrize("source, target", ALLOWED)
def test_allowed_transition_moves_and_audits(make_plan, source, target):
    plan = make_plan(source)
    before = AuditEntry.objects.count()
    transition(plan=plan, source=source, target=target)
    plan.refresh_from_db()
    assert plan.status == target
    entry = AuditEntry.objects.order_by("-pk").first()
    assert AuditEntry.objects.count() == before + 1
    assert entry.data["from"] == source and entry.data["to"] == target
    assert (plan.finished_at is not None) == (target in {"succeeded", "failed", "rejected", "expired", "cancelled"})


@pytest.mark.parametrize("source, target", REFUSED)
def test_refused_transition_raises_and_changes_nothing(make_plan, source, target):
    plan = make_plan(source)
    assert not can_transition(source, target)
    with pytest.raises(InvalidTransition):
        transition(plan=plan, source=source, target=target)
    plan.refresh_from_db()
    assert plan.status == source


def test_stale_source_loses(make_plan):
    plan = make_plan("pending_approval")
    transition(plan=plan, source="pending_approval", target="approved")
    stale = Plan.objects.get(pk=plan.pk)
    with pytest.raises(StaleState):
        transition(plan=stale, source="pending_approval", target="rejected")
    assert Plan.objects.get(pk=plan.pk).status == "approved"
