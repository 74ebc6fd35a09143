"""Tests written against the mutants of apps/plans/executor.py's auto-batching that its test set
let survive (mutmut 2.5.1 on branch mutate4; bench/README.md lists them). The portal is a
recorder (no HTTP): what matters is which plans go out together and how."""

import logging
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.audit.models import AuditEntry
from apps.bitrix import limiter
from apps.bitrix.envelope import BatchResult
from apps.bitrix.errors import NotSent, OutcomeUnknown, PortalError
from apps.plans import executor, services
from apps.plans.models import Plan

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent_with():
    """The keyword arguments of each call the recorder got (`reserved`, `halt`)."""
    return []


@pytest.fixture
def portal_calls(monkeypatch, sent_with):
    calls = []

    class Recorder:
        def __init__(self, portal, **kwargs):
            pass

        def run_steps(self, steps, **kwargs):
            sent_with.append(kwargs)
            calls.append(("steps", [s["name"] for s in steps]))
            return {"steps": {s["name"]: {"result": 1, "error": None, "total": None, "next": None} for s in steps}}

        def batch(self, commands, **kwargs):
            sent_with.append(kwargs)
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


def test_a_leader_left_alone_is_sent_on_the_slot_it_reserved(make_agent, portal, portal_calls, sent_with):
    """No companion: the leader goes as a plain call on the slot `_lead_batch` reserved, so the
    client must not take a second one."""
    agent = make_agent("loner", portal=portal, read="auto")
    plan = services.plan_submit(agent=agent, portal=portal, steps=[
        {"name": "read", "method": "crm.lead.get", "params": {"id": 1}}]).plan
    assert executor.execute(plan_id=plan.pk).status == "succeeded"
    assert portal_calls == [("steps", ["read"])]
    assert sent_with == [{"reserved": True}]


def test_a_leader_found_alone_with_no_wait_does_not_look_for_companions(make_agent, portal, portal_calls):
    """`_load` saw nobody waiting and the slot was free: the claim (a locking query) is skipped,
    so a plan approved since then is left for its own run."""
    agent = make_agent("skipper", portal=portal, read="auto")
    leader = services.plan_submit(agent=agent, portal=portal, steps=[
        {"name": "read", "method": "crm.lead.get", "params": {"id": 1}}]).plan
    later = services.plan_submit(agent=agent, portal=portal, steps=[
        {"name": "list", "method": "crm.lead.list", "params": {}}]).plan
    plan = Plan.objects.get(pk=leader.pk)
    plan.holds, plan.waiting = False, False
    record = executor._enter(plan)
    assert executor._lead_batch(plan, record).status == "succeeded"
    assert portal_calls == [("steps", ["read"])]
    assert Plan.objects.get(pk=later.pk).status == "approved"


def test_a_batch_leader_logs_its_size_and_timings(make_agent, portal, portal_calls, caplog):
    agent = make_agent("logger", portal=portal, read="auto")
    plans = [services.plan_submit(agent=agent, portal=portal, steps=[
        {"name": "read", "method": "crm.lead.get", "params": {"id": i}}]).plan for i in (1, 2)]
    with caplog.at_level(logging.INFO, logger="apps.plans.executor"):
        assert executor.execute(plan_id=plans[0].pk).status == "succeeded"
    assert portal_calls == [("batch", ["p0", "p1"])]
    [record] = [r for r in caplog.records if "led a batch" in r.getMessage()]
    assert record.msg == ("plan %s led a batch of %d plans: waited %.2f s for the slot, claimed in %.2f s, "
                          "sent and settled in %.2f s")
    pk, size, waited, claimed, sent = record.args
    assert (pk, size, waited) == (plans[0].pk, 2, 0.0)
    assert 0 <= claimed < 30 and 0 <= sent < 30  # durations, not sums of clock readings


def trail(plan, after):
    return [(e.action, e.data) for e in AuditEntry.objects.filter(plan_id=plan.pk, pk__gt=after).order_by("pk")]


def test_each_companion_is_entered_counted_and_audited_as_a_batched_run(make_agent, portal, portal_calls):
    """A companion moves to `executing` marked `batched`, with its attempt counted and numbered and
    a `plan.attempt` entry naming its methods; a companion whose content changed since its
    approval is entered the same way and failed on its own, never sent."""
    agent = make_agent("companions", portal=portal, read="auto")
    leader, good, changed = (services.plan_submit(agent=agent, portal=portal, steps=[
        {"name": "read", "method": "crm.lead.get", "params": {"id": i}}]).plan for i in (1, 2, 3))
    Plan.objects.filter(pk=changed.pk).update(steps=[{"name": "read", "method": "crm.lead.get", "params": {"id": 4}}])
    after = AuditEntry.objects.order_by("-pk").values_list("pk", flat=True).first()
    assert executor.execute(plan_id=leader.pk).status == "succeeded"
    assert portal_calls == [("batch", ["p0", "p1"])]
    good = Plan.objects.get(pk=good.pk)
    assert (good.status, good.attempt_count, [a.number for a in good.attempts.all()]) == ("succeeded", 1, [1])
    assert trail(good, after) == [
        ("plan.transition", {"from": "approved", "to": "executing", "batched": True}),
        ("plan.attempt", {"attempt": 1, "methods": ["crm.lead.get"]}),
        ("plan.transition", {"from": "executing", "to": "succeeded"}),
    ]
    changed = Plan.objects.get(pk=changed.pk)
    assert (changed.status, changed.attempt_count, changed.attempts.count()) == ("failed", 0, 0)
    assert changed.error["code"] == "content_hash_mismatch"
    assert trail(changed, after)[0] == ("plan.transition", {"from": "approved", "to": "executing", "batched": True})


def test_a_plan_that_cannot_join_does_not_stop_the_claim(make_agent, portal, portal_calls):
    """The newest approved plan has two steps: it is passed over and the older single call still
    joins the batch."""
    agent = make_agent("passer", portal=portal, read="auto")
    leader, older = (services.plan_submit(agent=agent, portal=portal, steps=[
        {"name": "read", "method": "crm.lead.get", "params": {"id": i}}]).plan for i in (1, 2))
    newest = services.plan_submit(agent=agent, portal=portal, steps=[
        {"name": "a", "method": "crm.lead.get", "params": {"id": 3}},
        {"name": "b", "method": "crm.lead.get", "params": {"id": 4}}]).plan
    assert executor.execute(plan_id=leader.pk).status == "succeeded"
    assert portal_calls == [("batch", ["p0", "p1"])]
    assert Plan.objects.get(pk=older.pk).status == "succeeded"
    assert Plan.objects.get(pk=newest.pk).status == "approved"


def test_the_claim_looks_at_no_more_than_twice_its_room(make_agent, portal, portal_calls, monkeypatch):
    """A batch of at most three (room for two companions): the claim locks and reads the four
    newest approved plans. Here those four have two steps each, so the two older single calls
    beyond them wait for their own run."""
    monkeypatch.setattr(executor, "MAX_BATCH", 3)
    agent = make_agent("bounded", portal=portal, read="auto")
    leader, *older = (services.plan_submit(agent=agent, portal=portal, steps=[
        {"name": "read", "method": "crm.lead.get", "params": {"id": i}}]).plan for i in (1, 2, 3))
    newer = [services.plan_submit(agent=agent, portal=portal, steps=[
        {"name": "a", "method": "crm.lead.get", "params": {"id": i}},
        {"name": "b", "method": "crm.lead.get", "params": {"id": i}}]).plan for i in range(4)]
    assert {p.status for p in newer} == {"approved"}
    assert executor.execute(plan_id=leader.pk).status == "succeeded"
    assert portal_calls == [("steps", ["read"])]
    assert [Plan.objects.get(pk=p.pk).status for p in older] == ["approved", "approved"]


@pytest.fixture
def batch_raises(monkeypatch):
    """A portal whose batch call raises the error the test puts in `errors[0]`."""
    errors = []

    class Refuser:
        def __init__(self, portal, **kwargs):
            pass

        def batch(self, commands, **kwargs):
            raise errors[0]

        def release_reserved_slot(self):
            pass

    monkeypatch.setattr(executor, "BitrixClient", Refuser)
    return errors


def two_reads(make_agent, portal):
    agent = make_agent("pair", portal=portal, read="auto")
    return [services.plan_submit(agent=agent, portal=portal, steps=[
        {"name": "read", "method": "crm.lead.get", "params": {"id": i}}]).plan for i in (1, 2)]


def test_a_batch_not_sent_closes_every_attempt_as_not_sent_and_retries_each_plan(make_agent, portal, batch_raises):
    exc = NotSent("QUERY_LIMIT_EXCEEDED", "Too many requests", retry_after=5.0)
    batch_raises.append(exc)
    leader, companion = two_reads(make_agent, portal)
    outcome = executor.execute(plan_id=leader.pk)
    assert (outcome.status, outcome.attempt) == ("executing", 1) and outcome.retry_in >= 5.0
    [(companion_id, attempt, retry_in)] = outcome.companions
    assert (companion_id, attempt) == (str(companion.pk), 1) and retry_in >= 5.0
    for plan in (leader, companion):
        attempt = Plan.objects.get(pk=plan.pk).attempts.get()
        assert (attempt.outcome, attempt.detail) == ("not_sent", {**exc.as_dict(), "deferred": False, "batch": 2})


def test_a_batch_with_its_answer_lost_closes_every_attempt_as_unknown(make_agent, portal, batch_raises):
    exc = OutcomeUnknown("TIMEOUT", "No answer within 30 s")
    batch_raises.append(exc)
    leader, companion = two_reads(make_agent, portal)
    outcome = executor.execute(plan_id=leader.pk)
    assert outcome.status == "executing" and [c[:2] for c in outcome.companions] == [(str(companion.pk), 1)]
    for plan in (leader, companion):
        attempt = Plan.objects.get(pk=plan.pk).attempts.get()
        assert (attempt.outcome, attempt.detail) == ("unknown", {**exc.as_dict(), "batch": 2})


def test_a_batch_the_portal_refused_fails_every_plan_with_the_portals_error(make_agent, portal, batch_raises):
    exc = PortalError("ACCESS_DENIED", "Access denied for this method")
    batch_raises.append(exc)
    leader, companion = two_reads(make_agent, portal)
    assert executor.execute(plan_id=leader.pk) == executor.Outcome("failed")
    for plan in (leader, companion):
        plan = Plan.objects.get(pk=plan.pk)
        assert plan.status == "failed"
        assert plan.error == {"code": "portal_error", "message": "Access denied for this method",
                              "cause": exc.as_dict()}
        attempt = plan.attempts.get()
        assert (attempt.outcome, attempt.detail) == ("answered", {**exc.as_dict(), "batch": 2})


def test_a_batch_takes_no_more_companions_than_its_room(make_agent, portal, portal_calls, monkeypatch):
    monkeypatch.setattr(executor, "MAX_BATCH", 3)
    agent = make_agent("roomy", portal=portal, read="auto")
    leader, *others = (services.plan_submit(agent=agent, portal=portal, steps=[
        {"name": "read", "method": "crm.lead.get", "params": {"id": i}}]).plan for i in range(5))
    assert executor.execute(plan_id=leader.pk).status == "succeeded"
    assert portal_calls == [("batch", ["p0", "p1", "p2"])]
    # the newest two joined, the older two wait
    assert [Plan.objects.get(pk=p.pk).status for p in others] == ["approved", "approved", "succeeded", "succeeded"]


# --- settling each plan on its own command's answer (_settle_members, _settle_member) ------------


@pytest.fixture
def batch_answer(monkeypatch):
    """A portal whose batch answers with what `answer[0]` builds from the command names (no HTTP)."""
    answer = []

    class Answerer:
        def __init__(self, portal, **kwargs):
            pass

        def batch(self, commands, **kwargs):
            return answer[0]([name for name, _method, _params in commands])

        def release_reserved_slot(self):
            pass

    monkeypatch.setattr(executor, "BitrixClient", Answerer)
    return answer


def submitted(agent, portal, *steps):
    """One single-call plan per step, oldest first (a batch takes its companions newest first)."""
    plans = [services.plan_submit(agent=agent, portal=portal, steps=[step]).plan for step in steps]
    assert {p.status for p in plans} == {"approved"}
    return plans


def test_each_answered_command_keeps_its_own_result_total_and_next(make_agent, portal, batch_answer):
    agent = make_agent("lister", portal=portal, write="auto")
    leader, companion = submitted(agent, portal, {"name": "read", "method": "crm.lead.get", "params": {"id": 1}},
                                  {"name": "list", "method": "crm.lead.list", "params": {}})
    batch_answer.append(lambda names: BatchResult(
        results={"p0": {"ID": "1"}, "p1": [{"ID": "5"}]}, totals={"p1": 120}, nexts={"p1": 50}))
    assert executor.execute(plan_id=leader.pk) == executor.Outcome("succeeded")
    assert Plan.objects.get(pk=leader.pk).result == {"steps": {"read": {
        "result": {"ID": "1"}, "error": None, "total": None, "next": None}}}
    assert Plan.objects.get(pk=companion.pk).result == {"steps": {"list": {
        "result": [{"ID": "5"}], "error": None, "total": 120, "next": 50}}}


def test_a_refused_command_fails_its_plan_with_the_portals_error_kept_whole(make_agent, portal, batch_answer):
    agent = make_agent("refused", portal=portal, write="auto")
    leader, companion = submitted(agent, portal, {"name": "read", "method": "crm.lead.get", "params": {"id": 1}},
                                  {"name": "find", "method": "crm.lead.get", "params": {"id": 999}})
    refusal = {"error": "NOT_FOUND", "error_description": "Not found"}
    batch_answer.append(lambda names: BatchResult(results={"p0": {"ID": "1"}}, errors={"p1": refusal}))
    after = AuditEntry.objects.order_by("-pk").values_list("pk", flat=True).first()
    assert executor.execute(plan_id=leader.pk) == executor.Outcome("succeeded")
    failed = Plan.objects.get(pk=companion.pk)
    assert failed.status == "failed"
    assert failed.result == {"steps": {"find": {"result": None, "error": refusal, "total": None, "next": None}}}
    assert failed.error == {"code": "step_failed", "message": "The portal refused a step.",
                            "steps": {"find": refusal}}
    assert trail(failed, after)[-1] == ("plan.transition", {"from": "executing", "to": "failed",
                                                            "failed_steps": ["find"]})
    attempt = failed.attempts.get()
    assert (attempt.outcome, attempt.detail) == ("answered", {"batch": 2})


def test_commands_missing_from_the_answer_are_unknown_and_do_not_stop_the_rest(make_agent, portal, batch_answer):
    """The answer holds nothing for two commands in the middle of the batch: nobody knows whether
    they ran. The write waits for a human, the read is retried; the command after them is still
    settled on its own answer."""
    agent = make_agent("missing", portal=portal, write="auto")
    older, read, write = submitted(
        agent, portal, {"name": "older", "method": "crm.lead.get", "params": {"id": 2}},
        {"name": "read", "method": "crm.lead.get", "params": {"id": 3}},
        {"name": "write", "method": "crm.lead.add", "params": {"fields": {"TITLE": "x"}}})
    leader = submitted(agent, portal, {"name": "lead", "method": "crm.lead.get", "params": {"id": 1}})[0]
    # members: the leader, then the newest first: p0 leader, p1 write, p2 read, p3 older
    batch_answer.append(lambda names: BatchResult(results={"p0": {"ID": "1"}, "p3": {"ID": "2"}}))
    outcome = executor.execute(plan_id=leader.pk)
    assert (outcome.status, [c[:2] for c in outcome.companions]) == ("succeeded", [(str(read.pk), 1)])
    missing = {"code": "BATCH_ANSWER_MISSING", "description": "The batch answer held nothing for this call.",
               "http_status": None}
    write = Plan.objects.get(pk=write.pk)
    assert (write.status, write.error["code"], write.error["cause"]) == ("needs_reconciliation", "outcome_unknown",
                                                                         missing)
    read = Plan.objects.get(pk=read.pk)
    assert read.status == "executing"
    for plan in (write, read):
        attempt = plan.attempts.get()
        assert (attempt.outcome, attempt.detail) == ("unknown", {**missing, "batch": 4})
    older = Plan.objects.get(pk=older.pk)
    assert (older.status, older.result) == ("succeeded", {"steps": {"older": {
        "result": {"ID": "2"}, "error": None, "total": None, "next": None}}})


@pytest.mark.parametrize(("rate", "description", "retry_after"), [
    (0.25, "Too many requests", 4.0),  # one slot of the portal's rate
    (2.0, "", 1.0),  # half a second: at least one
])
def test_a_command_refused_for_the_request_rate_is_retried_alone_after_one_slot(
        make_agent, portal, batch_answer, rate, description, retry_after):
    portal.rate_per_second = rate
    portal.save(update_fields=["rate_per_second"])
    agent = make_agent("limited", portal=portal, write="auto")
    leader, companion = submitted(agent, portal, {"name": "read", "method": "crm.lead.get", "params": {"id": 1}},
                                  {"name": "list", "method": "crm.lead.list", "params": {}})
    batch_answer.append(lambda names: BatchResult(results={"p0": {"ID": "1"}}, errors={
        "p1": {"error": "QUERY_LIMIT_EXCEEDED", "error_description": description}}))
    outcome = executor.execute(plan_id=leader.pk)
    assert outcome.status == "succeeded"
    [(companion_id, attempt, retry_in)] = outcome.companions
    assert (companion_id, attempt) == (str(companion.pk), 1) and retry_in >= retry_after
    companion = Plan.objects.get(pk=companion.pk)
    assert companion.status == "executing"
    record = companion.attempts.get()
    assert (record.outcome, record.detail) == ("not_sent", {
        "code": "QUERY_LIMIT_EXCEEDED", "description": description, "http_status": None,
        "retry_after": retry_after, "deferred": False, "batch": 2})


def test_a_command_over_its_operating_time_waits_until_the_reset_the_portal_named(make_agent, portal, batch_answer):
    agent = make_agent("slow", portal=portal, write="auto")
    leader, companion = submitted(agent, portal, {"name": "read", "method": "crm.lead.get", "params": {"id": 1}},
                                  {"name": "list", "method": "crm.lead.list", "params": {}})
    refusal = {"error": "OPERATION_TIME_LIMIT", "error_description": "Method is blocked due to operation time limit."}
    reset_at = time.time() + 30
    batch_answer.append(lambda names: BatchResult(results={"p0": {"ID": "1"}}, errors={"p1": refusal},
                                                  times={"p1": {"operating_reset_at": reset_at}}))
    outcome = executor.execute(plan_id=leader.pk)
    [(_companion_id, _attempt, retry_in)] = outcome.companions
    record = Plan.objects.get(pk=companion.pk).attempts.get()
    assert record.outcome == "not_sent"
    detail = dict(record.detail)
    assert 25 < detail.pop("retry_after") <= 30 and 25 < retry_in <= 60
    assert detail == {"code": "OPERATION_TIME_LIMIT", "description": refusal["error_description"],
                      "http_status": None, "deferred": False, "batch": 2}


def test_refused_commands_are_settled_with_the_answered_ones_whatever_their_number(make_agent, portal, batch_answer):
    """A refused command is an answer too: its plan is settled together with the others (one UPDATE
    of the attempts, one per final state), not one by one, so a batch costs the same statements
    with one refused command as with four (after a first batch: it creates the portal's limiter row)."""
    agent = make_agent("manyrefused", portal=portal, write="auto")
    refusal = {"error": "NOT_FOUND", "error_description": "Not found"}
    batch_answer.append(lambda names: BatchResult(results={"p0": {"ID": "1"}}, errors={n: refusal for n in names[1:]}))
    counts = []
    for refused in (1, 1, 4):
        leader, *others = submitted(agent, portal, *({"name": "read", "method": "crm.lead.get", "params": {"id": i}}
                                                     for i in range(refused + 1)))
        with CaptureQueriesContext(connection) as run:
            assert executor.execute(plan_id=leader.pk) == executor.Outcome("succeeded")
        assert [Plan.objects.get(pk=p.pk).status for p in others] == ["failed"] * refused
        counts.append(len(run.captured_queries))
    assert counts[1] == counts[2], counts
