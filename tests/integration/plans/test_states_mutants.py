"""The state machine's edges: what a lost race says, and that only a final state schedules the
agent's callback. Written against the survivors of `make mutate MUTATE_ONLY=states`
(bench/README.md, "Mutation testing"); the tests call `states.transition`."""

import pytest

from apps.approvals.models import CallbackDelivery
from apps.plans import services, states
from apps.plans.choices import PlanStatus

pytestmark = pytest.mark.django_db

WRITE = [{"name": "call", "method": "crm.lead.add", "params": {"fields": {"TITLE": "x"}}}]


@pytest.fixture
def plan_with_callback(settings, agent, portal):
    settings.CALLBACK_ALLOW_HOSTS = ["127.0.0.1"]
    return services.plan_submit(agent=agent, portal=portal, steps=WRITE, callback_url="http://127.0.0.1:9/hook").plan


def test_a_lost_race_names_the_state_the_plan_left(agent, portal):
    plan = services.plan_submit(agent=agent, portal=portal, steps=WRITE).plan
    states.transition(plan=plan, source=PlanStatus.PENDING_APPROVAL, target=PlanStatus.CANCELLED)
    with pytest.raises(states.StaleState) as lost:
        states.transition(plan=plan, source=PlanStatus.PENDING_APPROVAL, target=PlanStatus.APPROVED)
    assert lost.value.message == "The plan is no longer pending_approval."
    assert lost.value.extra == {"plan_id": str(plan.pk)}


def test_a_move_to_a_state_that_is_not_final_schedules_no_callback(plan_with_callback,
                                                                     django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as queued:
        plan = states.transition(plan=plan_with_callback, source=PlanStatus.PENDING_APPROVAL,
                                 target=PlanStatus.APPROVED)
    assert plan.status == PlanStatus.APPROVED
    assert not CallbackDelivery.objects.filter(plan=plan).exists() and queued == []


def test_a_move_to_a_final_state_schedules_one_callback(plan_with_callback, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as queued:
        plan = states.transition(plan=plan_with_callback, source=PlanStatus.PENDING_APPROVAL,
                                 target=PlanStatus.CANCELLED)
    delivery = CallbackDelivery.objects.get(plan=plan)
    assert (delivery.plan_status, delivery.url) == ("cancelled", "http://127.0.0.1:9/hook")
    assert len([c for c in queued if "deliver_callback" in repr(c)]) == 1  # the wake-up is queued too
