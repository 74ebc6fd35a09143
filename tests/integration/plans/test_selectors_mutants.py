"""The plan selectors at their edges: waiting for a final plan (on a fake clock, so no test
sleeps or times anything), fetching and listing an agent's own plans, and who may decide. Written
against the survivors of `make mutate MUTATE_ONLY=selectors` (bench/README.md, "Mutation
testing"); every test calls the public selectors."""

import asyncio
import time
import uuid

import pytest

from apps.core import wakeup
from apps.core.exceptions import InvalidRequest, NotFound
from apps.plans import selectors, services
from apps.plans.choices import PlanStatus
from apps.plans.models import Plan

pytestmark = pytest.mark.django_db

WRITE = [{"name": "call", "method": "crm.lead.add", "params": {"fields": {"TITLE": "x"}}}]


def pending(agent, portal):
    return services.plan_submit(agent=agent, portal=portal, steps=WRITE).plan


class FakeClock:
    """time.monotonic, and a wake-up subscription's wait, on a clock that moves only when waited
    on (no signal ever comes, so each wait lasts its whole timeout; the safety-net re-read interval
    is 0.25 s); `on_sleep` runs after each wait (a worker finishing the plan meanwhile)."""

    def __init__(self, monkeypatch, on_sleep=None):
        self.now = 100.0  # exact in binary: 100 + 4 × 0.25 is exactly 101
        self.sleeps = []
        self.on_sleep = on_sleep
        self.reads = 0
        monkeypatch.setattr(time, "monotonic", self.monotonic)
        monkeypatch.setattr(wakeup.Subscription, "wait_sync", lambda sub, timeout: bool(self.sleep(timeout)))
        monkeypatch.setattr(wakeup, "fallback_seconds", lambda: 0.25)

    def monotonic(self):
        self.reads += 1
        assert self.reads < 100, "spinning on the clock without sleeping"
        return self.now

    def sleep(self, seconds):
        assert len(self.sleeps) < 20, f"still waiting after {self.sleeps}"
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep:
            self.on_sleep(len(self.sleeps))


def test_waiting_on_a_plan_that_stays_pending_rereads_every_interval_until_the_deadline(
        monkeypatch, agent, portal):
    plan = pending(agent, portal)
    clock = FakeClock(monkeypatch)
    waited = selectors.plan_wait_final(agent=agent, plan=plan, seconds=1)
    assert clock.sleeps == [0.25, 0.25, 0.25, 0.25]
    assert waited.pk == plan.pk and waited.status == PlanStatus.PENDING_APPROVAL


def test_the_last_poll_sleeps_only_what_is_left(monkeypatch, agent, portal):
    plan = pending(agent, portal)
    clock = FakeClock(monkeypatch)
    selectors.plan_wait_final(agent=agent, plan=plan, seconds=0.375)
    assert clock.sleeps == [0.25, 0.125]


def test_waiting_zero_seconds_returns_the_plan_as_it_is(monkeypatch, agent, portal):
    plan = pending(agent, portal)
    clock = FakeClock(monkeypatch)
    assert selectors.plan_wait_final(agent=agent, plan=plan, seconds=0) is plan
    assert clock.sleeps == []


def test_the_wait_ends_as_soon_as_the_reloaded_plan_is_final(monkeypatch, agent, portal):
    plan = pending(agent, portal)

    def worker(polls):
        if polls == 2:
            Plan.objects.filter(pk=plan.pk).update(status=PlanStatus.NEEDS_RECONCILIATION)

    clock = FakeClock(monkeypatch, on_sleep=worker)
    waited = selectors.plan_wait_final(agent=agent, plan=plan, seconds=30)
    assert clock.sleeps == [0.25, 0.25]
    assert waited.status == PlanStatus.NEEDS_RECONCILIATION


def test_a_plan_final_already_is_returned_without_waiting(monkeypatch, agent, portal):
    plan = pending(agent, portal)
    Plan.objects.filter(pk=plan.pk).update(status=PlanStatus.SUCCEEDED)
    plan.refresh_from_db()
    clock = FakeClock(monkeypatch)
    assert selectors.plan_wait_final(agent=agent, plan=plan, seconds=30) is plan
    assert clock.sleeps == []


def test_an_agent_gets_its_own_plan_by_id_in_any_spelling(agent, portal):
    plan = pending(agent, portal)
    for plan_id in (plan.pk, str(plan.pk), str(plan.pk).upper()):
        assert selectors.plan_get_for_agent(agent=agent, plan_id=plan_id).pk == plan.pk


@pytest.mark.parametrize("plan_id", ["nope", "", 42, None, str(uuid.UUID(int=0))])
def test_anything_but_an_own_plan_id_is_not_found(agent, portal, plan_id):
    pending(agent, portal)
    with pytest.raises(NotFound) as missing:
        selectors.plan_get_for_agent(agent=agent, plan_id=plan_id)
    assert missing.value.message == "No such plan."


def test_another_agents_plan_is_not_found(agent, portal, make_agent):
    theirs = pending(make_agent("agent-b", portal=portal), portal)
    with pytest.raises(NotFound):
        selectors.plan_get_for_agent(agent=agent, plan_id=theirs.pk)


@pytest.mark.parametrize(("value", "expected"), [
    ("4ab8bf8c-ce0f-4491-8c78-0ce94ef75863", True), (uuid.UUID("7e68eec2-cea7-4e5d-a794-6473d1333a61"), True),
    ("not-a-uuid", False), ("", False), (None, False)])
def test_is_uuid(value, expected):
    assert selectors.is_uuid(value) is expected


def many_plans(agent, portal, count):
    """`count` plans of the agent, cloned from one submitted plan, newest last."""
    template = Plan.objects.filter(pk=pending(agent, portal).pk).values().get()
    Plan.objects.bulk_create(Plan(**{**template, "id": uuid.uuid4()}) for _ in range(count - 1))
    return list(Plan.objects.filter(agent=agent).order_by("-created_at", "-pk").values_list("pk", flat=True))


def test_a_list_holds_one_plan_more_than_the_limit_so_the_caller_knows_there_is_more(agent, portal):
    newest_first = many_plans(agent, portal, 53)
    assert [p.pk for p in selectors.plan_list_for_agent(agent=agent)] == newest_first[:51]
    assert [p.pk for p in selectors.plan_list_for_agent(agent=agent, limit=2)] == newest_first[:3]


def test_a_cursor_continues_after_the_plan_it_names(agent, portal):
    newest_first = many_plans(agent, portal, 5)
    third = Plan.objects.get(pk=newest_first[2])
    page = selectors.plan_list_for_agent(agent=agent, cursor=(third.created_at, third.pk), limit=1)
    assert [p.pk for p in page] == newest_first[3:5]


def test_an_unknown_status_filter_is_refused_naming_the_values(agent):
    with pytest.raises(InvalidRequest) as refused:
        selectors.plan_list_for_agent(agent=agent, status="done")
    assert refused.value.extra == {"field": "status"}
    assert refused.value.message == f"status is one of {', '.join(PlanStatus.values)}."


def test_the_status_and_portal_filters(agent, portal):
    plan = pending(agent, portal)
    assert [p.pk for p in selectors.plan_list_for_agent(agent=agent, status="pending_approval")] == [plan.pk]
    assert selectors.plan_list_for_agent(agent=agent, status="approved") == []
    assert [p.pk for p in selectors.plan_list_for_agent(agent=agent, portal="acme")] == [plan.pk]
    assert selectors.plan_list_for_agent(agent=agent, portal="other") == []


def test_nobody_decides_without_a_user(portal):
    assert list(selectors.portals_decidable_by(None)) == []
    assert not selectors.user_may_decide(user=None, portal=portal)


def test_an_approver_may_decide_a_plan_of_an_agent_someone_else_owns(make_agent, make_approver, portal):
    owner = make_approver("olga", portals=[portal])
    approver = make_approver("alice", portals=[portal])
    plan = pending(make_agent("owned", portal=portal, owner=owner), portal)
    assert selectors.personal_refusal(user=approver, plan=plan) is None
    assert selectors.plan_decisions_for(user=approver, plan=plan) == ["approve", "reject"]
    assert selectors.personal_refusal(user=owner, plan=plan) == (
        "The owner of the submitting agent cannot decide its plans.")
    assert selectors.plan_decisions_for(user=owner, plan=plan) == []


def test_a_plan_needing_reconciliation_may_be_settled_and_a_final_one_not_decided(agent, portal, approver):
    plan = pending(agent, portal)
    Plan.objects.filter(pk=plan.pk).update(status=PlanStatus.NEEDS_RECONCILIATION)
    plan.refresh_from_db()
    assert selectors.plan_decisions_for(user=approver, plan=plan) == ["settle_succeeded", "settle_failed"]
    Plan.objects.filter(pk=plan.pk).update(status=PlanStatus.FAILED)
    plan.refresh_from_db()
    assert selectors.plan_decisions_for(user=approver, plan=plan) == []
    assert [p.pk for p in selectors.plans_decidable_by(approver)] == [plan.pk]


def test_an_approver_who_decided_is_told_a_second_one_is_needed(agent, portal, approver, approver2):
    plan = services.plan_submit(agent=agent, portal=portal,
                                steps=[{"name": "call", "method": "crm.lead.delete", "params": {"id": 1}}]).plan
    plan = services.plan_decide(plan_id=plan.pk, user=approver, decision="approve")
    assert plan.approvals_required == 2 and plan.status == PlanStatus.PENDING_APPROVAL
    assert selectors.personal_refusal(user=approver, plan=plan) == (
        "You have already decided this plan; a second approver is needed.")
    assert selectors.plan_decisions_for(user=approver, plan=plan) == []
    assert selectors.plan_decisions_for(user=approver2, plan=plan) == ["approve", "reject"]


@pytest.mark.django_db(transaction=True)  # the wait reads on threads of its own
def test_an_async_wait_catches_a_change_made_between_the_callers_read_and_its_subscription(agent, portal, settings):
    """The caller's plan was read before the wait subscribed: a plan that moved on meanwhile (its
    signal sent before anyone listened) is read again at once instead of waited on."""
    settings.WAKEUP_FALLBACK_SECONDS = 3600  # no sweep within the test: only the check can see it
    plan = pending(agent, portal)
    stale = Plan.objects.get(pk=plan.pk)
    services.plan_cancel(plan_id=plan.pk, agent=agent)
    answered = asyncio.run(asyncio.wait_for(selectors.plan_await_final(agent=agent, plan=stale, seconds=30), 10))
    assert (stale.status, answered.status) == (PlanStatus.PENDING_APPROVAL, PlanStatus.CANCELLED)
