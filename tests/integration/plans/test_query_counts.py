"""What the hot path costs in SQL statements: submit, poll, list and execute (a stub portal).

Counted on the suite's database, transaction control (BEGIN/COMMIT/SAVEPOINT) included. The
bounds are the costs measured when these tests were written; each audit entry is 5 statements
(apps.audit), a submit writes 2 entries and an execution 3. What the tests guard above all is that
nothing grows with the number of plans (no N+1)."""

import json

import pytest

from apps.approvals.models import PlanPreview
from apps.bitrix.models import PortalLimiter
from apps.plans import executor, services
from apps.plans.models import Approval, Plan

pytestmark = pytest.mark.django_db(transaction=True)

SUBMIT_MAX = 20
POLL_MAX = 4
LIST_MAX = 4
EXECUTE_MAX = 37
BATCH_PER_PLAN_MAX = 30  # its own writes: 3 status changes, its attempt, 3 audit entries


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


def test_execute_a_single_call_plan(writer, stub_portal, django_assert_max_num_queries):
    plan = services.plan_submit(agent=writer, portal=stub_portal, steps=[
        {"name": "c", "method": "crm.lead.add", "params": {"fields": {"TITLE": "t"}}}]).plan
    with django_assert_max_num_queries(EXECUTE_MAX):
        assert executor.execute(plan_id=plan.pk).status == "succeeded"
    assert Plan.objects.get(pk=plan.pk).result["steps"]["c"]["result"] == 7


def test_a_batch_costs_a_fixed_number_of_statements_per_plan(writer, make_agent, stub_portal,
                                                             django_assert_max_num_queries):
    other = make_agent("qc2", portal=stub_portal, write="auto")
    plans = [services.plan_submit(agent=writer if i % 2 else other, portal=stub_portal, steps=[
        {"name": "c", "method": "crm.lead.add", "params": {"fields": {"TITLE": str(i)}}}]).plan for i in range(20)]
    with django_assert_max_num_queries(BATCH_PER_PLAN_MAX * 20) as batch:
        assert executor.execute(plan_id=plans[0].pk).status == "succeeded"
    assert Plan.objects.filter(status="succeeded").count() == 20
    # reads do not grow with the plans: the leader (status, row), claim, holds, bucket, grants per agent
    reads = [q["sql"] for q in batch.captured_queries
             if q["sql"].startswith("SELECT") and "audit_audithead" not in q["sql"]]
    assert len(reads) <= 8, reads
