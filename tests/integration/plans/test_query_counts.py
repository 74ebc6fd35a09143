"""What the hot path costs in SQL statements: submit, poll, list and execute (a stub portal).

Counted on the suite's database. Issue 11 sets the budgets: at most 10 statements to submit a
plan, transaction control (BEGIN/COMMIT) included; at most 12 to execute a single-call plan,
counted without transaction control: with it, execution is 16 (three transactions: enter the
plan and record its attempt, settle it, and the limiter's one-statement reservation between them
in autocommit). Each transaction's audit entries cost 3 statements whatever their number (lock
the chain's head, one multi-row insert, move the head). And nothing grows with the number of
plans (no N+1): a batch of 40 plans costs exactly what a batch of 10 does."""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.approvals.models import PlanPreview
from apps.bitrix.models import PortalLimiter
from apps.plans import executor, services
from apps.plans.models import Approval, ExecutionAttempt, Plan

pytestmark = pytest.mark.django_db(transaction=True)

SUBMIT_MAX = 10
POLL_MAX = 4
LIST_MAX = 4
EXECUTE_MAX = 12  # without BEGIN/COMMIT
EXECUTE_MAX_WITH_TRANSACTIONS = 16
TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE SAVEPOINT")


def statements(captured) -> list[str]:
    """The statements that read or write data (transaction control left out)."""
    return [q["sql"] for q in captured.captured_queries if not q["sql"].upper().startswith(TRANSACTION_CONTROL)]


class FakeResponse:
    def __init__(self, body, status=200):
        self.status_code = status
        self.content = json.dumps(body).encode()


@pytest.fixture
def stub_portal(monkeypatch, portal):
    """The portal answers every call (a batch: every command) without a network."""

    def http_send(http_method, url, *, json_body=None, **kwargs):
        if url.rstrip("/").endswith("/batch"):
            cmd = json_body["cmd"]
            return FakeResponse({"result": {"result": {name: 7 for name in cmd}, "result_error": [],
                                            "result_total": [], "result_next": [], "result_time": {}}})
        return FakeResponse({"result": 7})

    monkeypatch.setattr("apps.bitrix.client.http_send", http_send)
    PortalLimiter.objects.create(portal=portal, level=0.0, updated_at=0.0)  # steady state: the row exists
    return portal


@pytest.fixture
def writer(make_agent, stub_portal):
    return make_agent("qc", portal=stub_portal, write="auto")


def submit_body(portal, title="x"):
    return {"portal": portal.slug, "method": "crm.lead.add", "params": {"fields": {"TITLE": title}}}


def test_submit(api, writer, stub_portal, django_assert_max_num_queries):
    api.post("/api/v1/plans", submit_body(stub_portal), token=writer.token)  # warm caches
    with django_assert_max_num_queries(SUBMIT_MAX):
        response = api.post("/api/v1/plans", submit_body(stub_portal), token=writer.token)
    assert response.status_code == 201 and response.json()["status"] == "approved"
    assert response.json()["approvals"] == [] and response.json()["changes"] == []
    plan = Plan.objects.get(pk=response.json()["id"])
    assert [e.data.get("to") for e in plan_entries(plan)] == [None, "approved"]


def test_submit_with_an_idempotency_key(api, writer, stub_portal, django_assert_max_num_queries):
    api.post("/api/v1/plans", submit_body(stub_portal), token=writer.token)
    with django_assert_max_num_queries(SUBMIT_MAX):
        response = api.post("/api/v1/plans", submit_body(stub_portal), token=writer.token,
                            headers={"Idempotency-Key": "k-1"})
    assert response.status_code == 201
    with django_assert_max_num_queries(SUBMIT_MAX):
        replay = api.post("/api/v1/plans", submit_body(stub_portal), token=writer.token,
                          headers={"Idempotency-Key": "k-1"})
    assert replay.status_code == 200 and replay.json()["id"] == response.json()["id"]


def test_submit_for_approval(api, make_agent, stub_portal, django_assert_max_num_queries,
                             django_capture_on_commit_callbacks, monkeypatch):
    """Counted with what runs after the commit: the approvers' notice wake (the flag's read, and
    its upsert when no notice run is queued)."""
    from apps.approvals import tasks

    queued = []
    monkeypatch.setattr(tasks.notify_portal_pending, "apply_async", lambda args, **kw: queued.append(tuple(args)))
    agent = make_agent("qa", portal=stub_portal)  # writes need one approver
    api.post("/api/v1/plans", submit_body(stub_portal), token=agent.token)
    for queued_run in (False, True):  # the first wakes a notice run, the second finds it queued
        with django_assert_max_num_queries(SUBMIT_MAX), django_capture_on_commit_callbacks(execute=True):
            response = api.post("/api/v1/plans", submit_body(stub_portal), token=agent.token)
        assert response.status_code == 201 and response.json()["status"] == "pending_approval"
        assert len(queued) == 1, queued_run


def plan_entries(plan):
    from apps.audit.models import AuditEntry

    return list(AuditEntry.objects.filter(plan_id=plan.pk).order_by("seq"))


def make_plans(agent, portal, approver, n):
    plans = []
    for i in range(n):
        plan = services.plan_submit(agent=agent, portal=portal, steps=[
            {"name": "u", "method": "crm.lead.update", "params": {"id": i + 1, "fields": {"TITLE": "t"}}}]).plan
        PlanPreview.objects.create(plan=plan, steps={"u": {"entity": "lead", "read": "crm.lead.get",
                                                           "key": {"id": i + 1}, "before": {"TITLE": "o"}}})
        Approval.objects.create(plan=plan, user=approver, decision="approve", content_hash=plan.content_hash)
        plans.append(plan)
    return plans


def test_poll_and_list_do_not_grow_with_the_number_of_plans(api, make_agent, stub_portal, approver,
                                                            django_assert_max_num_queries,
                                                            django_assert_num_queries):
    agent = make_agent("lister", portal=stub_portal)
    (first,) = make_plans(agent, stub_portal, approver, 1)
    with django_assert_max_num_queries(POLL_MAX):
        poll = api.get(f"/api/v1/plans/{first.pk}", token=agent.token)
    assert poll.json()["changes"][0]["fields"]["TITLE"] == {"before": "o", "after": "t", "exists": True}
    assert len(poll.json()["approvals"]) == 1
    with django_assert_max_num_queries(LIST_MAX) as one:
        assert len(api.get("/api/v1/plans", token=agent.token).json()["plans"]) == 1
    make_plans(agent, stub_portal, approver, 19)
    with django_assert_num_queries(len(one.captured_queries)):
        listed = api.get("/api/v1/plans", token=agent.token).json()["plans"]
    assert len(listed) == 20 and all(p["changes"] and p["approvals"] for p in listed)


def test_execute_a_single_call_plan(writer, stub_portal):
    plan = services.plan_submit(agent=writer, portal=stub_portal, steps=[
        {"name": "c", "method": "crm.lead.add", "params": {"fields": {"TITLE": "t"}}}]).plan
    with CaptureQueriesContext(connection) as run:
        assert executor.execute(plan_id=plan.pk).status == "succeeded"
    assert len(statements(run)) <= EXECUTE_MAX, statements(run)
    assert len(run.captured_queries) <= EXECUTE_MAX_WITH_TRANSACTIONS
    assert Plan.objects.get(pk=plan.pk).result["steps"]["c"]["result"] == 7
    assert [(a.number, a.outcome) for a in ExecutionAttempt.objects.filter(plan=plan)] == [(1, "answered")]
    assert [(e.action, e.data.get("to")) for e in plan_entries(plan)][2:] == [
        ("plan.transition", "executing"), ("plan.attempt", None), ("plan.transition", "succeeded")]


def test_a_redelivered_task_costs_one_statement(writer, stub_portal, django_assert_max_num_queries):
    plan = services.plan_submit(agent=writer, portal=stub_portal, steps=[
        {"name": "c", "method": "crm.lead.add", "params": {"fields": {"TITLE": "t"}}}]).plan
    executor.execute(plan_id=plan.pk)
    with django_assert_max_num_queries(1):
        assert executor.execute(plan_id=plan.pk).status == "skipped"


def run_batch(writer, other, portal, n):
    plans = [services.plan_submit(agent=writer if i % 2 else other, portal=portal, steps=[
        {"name": "c", "method": "crm.lead.add", "params": {"fields": {"TITLE": str(i)}}}]).plan for i in range(n)]
    with CaptureQueriesContext(connection) as batch:
        assert executor.execute(plan_id=plans[0].pk).status == "succeeded"
    assert Plan.objects.filter(pk__in=[p.pk for p in plans], status="succeeded").count() == n
    assert ExecutionAttempt.objects.filter(plan__in=plans, outcome="answered", detail={"batch": n}).count() == n
    return batch


def test_a_batch_costs_the_same_statements_whatever_its_size(writer, make_agent, stub_portal):
    other = make_agent("qc2", portal=stub_portal, write="auto")
    small = run_batch(writer, other, stub_portal, 10)
    large = run_batch(writer, other, stub_portal, 40)
    assert len(large.captured_queries) == len(small.captured_queries), statements(large)
    # the leader's read, its transaction (4 + 3 audit), the slot, the claim (select, update, attempts,
    # 3 audit), the settlement (attempts, plans, 3 audit)
    assert len(statements(large)) <= 18, statements(large)
    reads = [q for q in statements(large) if q.startswith("SELECT") and "audit_audithead" not in q]
    assert len(reads) == 2, reads  # the leader with its grants, the companions with theirs
