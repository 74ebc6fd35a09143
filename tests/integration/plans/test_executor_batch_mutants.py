"""Tests written against the mutants of apps/plans/executor.py's auto-batching that its test set
let survive (mutmut 2.5.1 on branch mutate4; bench/README.md lists them). The portal is a
recorder (no HTTP): what matters is which plans go out together and how."""

import time

import pytest

from apps.bitrix import limiter
from apps.bitrix.envelope import BatchResult
from apps.plans import executor, services
from apps.plans.models import Plan

pytestmark = pytest.mark.django_db


@pytest.fixture
def portal_calls(monkeypatch):
    calls = []

    class Recorder:
        def __init__(self, portal, **kwargs):
            pass

        def run_steps(self, steps, **kwargs):
            calls.append(("steps", [s["name"] for s in steps]))
            return {"steps": {s["name"]: {"result": 1, "error": None, "total": None, "next": None} for s in steps}}

        def batch(self, commands, **kwargs):
            calls.append(("batch", [name for name, _method, _params in commands]))
            return BatchResult(results={name: 1 for name, _method, _params in commands})

        def release_reserved_slot(self):
            calls.append(("release", None))

    monkeypatch.setattr(executor, "BitrixClient", Recorder)
    return calls


def test_a_plan_of_several_steps_runs_alone_even_with_plans_waiting(make_agent, portal, portal_calls):
    """Only a single call can share a batch: a batch command carries one method, so a two-step
    plan in a batch would lose its second step."""
    agent = make_agent("multi", portal=portal, read="auto")
    two = services.plan_submit(agent=agent, portal=portal, steps=[
        {"name": "first", "method": "crm.lead.get", "params": {"id": 1}},
        {"name": "second", "method": "crm.deal.get", "params": {"id": 2}}]).plan
    waiting = services.plan_submit(agent=agent, portal=portal, steps=[
        {"name": "only", "method": "crm.lead.get", "params": {"id": 3}}]).plan
    assert (two.status, waiting.status) == ("approved", "approved")
    assert not executor.batchable(Plan.objects.get(pk=two.pk))
    assert executor.execute(plan_id=two.pk).status == "succeeded"
    assert portal_calls == [("steps", ["first", "second"])]
    assert Plan.objects.get(pk=waiting.pk).status == "approved"


def test_a_batch_plan_runs_alone_even_with_plans_waiting(make_agent, portal, portal_calls):
    """A `batch` cannot sit inside another batch (the portal refuses it): a plan whose one call is
    a batch is never a leader or a companion."""
    agent = make_agent("batcher", portal=portal, read="auto")
    inner = services.plan_submit(agent=agent, portal=portal, steps=[
        {"name": "b", "method": "batch", "params": {"halt": 0, "cmd": {"a": "crm.lead.get?id=1"}}}]).plan
    waiting = services.plan_submit(agent=agent, portal=portal, steps=[
        {"name": "only", "method": "crm.lead.get", "params": {"id": 3}}]).plan
    assert executor.execute(plan_id=inner.pk).status == "succeeded"
    assert portal_calls == [("steps", ["b"])]
    assert Plan.objects.get(pk=waiting.pk).status == "approved"


def lead(plan):
    """`_lead_batch` on a plan read without `_load`'s annotations (`holds`, `waiting`): the
    defaults must be the careful ones, look the held methods up and look for companions."""
    plan = Plan.objects.get(pk=plan.pk)
    assert not hasattr(plan, "holds") and not hasattr(plan, "waiting")
    record = executor._enter(plan)
    return executor._lead_batch(plan, record)


def test_a_leader_without_the_holds_annotation_still_runs_alone_when_its_method_is_held(
        make_agent, portal, portal_calls):
    agent = make_agent("holder", portal=portal, read="auto")
    leader = services.plan_submit(agent=agent, portal=portal, steps=[
        {"name": "read", "method": "crm.lead.get", "params": {"id": 1}}]).plan
    waiting = services.plan_submit(agent=agent, portal=portal, steps=[
        {"name": "list", "method": "crm.lead.list", "params": {}}]).plan
    limiter.method_block_hold(portal_id=portal.pk, method="crm.lead.get", time_info={
        "operating_reset_at": time.time() + 600})
    assert lead(leader).status == "succeeded"
    assert portal_calls == [("steps", ["read"])]
    assert Plan.objects.get(pk=waiting.pk).status == "approved"


def test_a_leader_without_the_waiting_annotation_still_looks_for_companions(make_agent, portal, portal_calls):
    agent = make_agent("looker", portal=portal, read="auto")
    leader = services.plan_submit(agent=agent, portal=portal, steps=[
        {"name": "read", "method": "crm.lead.get", "params": {"id": 1}}]).plan
    waiting = services.plan_submit(agent=agent, portal=portal, steps=[
        {"name": "list", "method": "crm.lead.list", "params": {}}]).plan
    assert lead(leader).status == "succeeded"
    assert portal_calls == [("batch", ["p0", "p1"])]
    assert Plan.objects.get(pk=waiting.pk).status == "succeeded"


def test_a_leader_that_waited_for_its_slot_takes_the_plans_approved_meanwhile(make_agent, portal, portal_calls):
    """`_load` saw no other plan waiting (`waiting` False), but the leader had to wait half a
    second for its slot (rate 2/s, a bucket of one already full): it waits that long, then claims
    the plan approved in the meantime."""
    portal.rate_per_second, portal.burst = 2.0, 1
    portal.save(update_fields=["rate_per_second", "burst"])
    agent = make_agent("waiter", portal=portal, read="auto")
    leader = services.plan_submit(agent=agent, portal=portal, steps=[
        {"name": "read", "method": "crm.lead.get", "params": {"id": 1}}]).plan
    meanwhile = services.plan_submit(agent=agent, portal=portal, steps=[
        {"name": "list", "method": "crm.lead.list", "params": {}}]).plan
    plan = Plan.objects.get(pk=leader.pk)
    plan.holds, plan.waiting = False, False
    record = executor._enter(plan)
    assert limiter.limiter_reserve(portal_id=portal.pk, rate=2.0, burst=1) == 0.0  # the bucket is full now
    started = time.monotonic()
    assert executor._lead_batch(plan, record).status == "succeeded"
    assert time.monotonic() - started >= 0.45
    assert portal_calls == [("batch", ["p0", "p1"])]
    assert Plan.objects.get(pk=meanwhile.pk).status == "succeeded"
