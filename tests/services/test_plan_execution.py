"""Cross-process guarantees of plan execution and submission (real PostgreSQL, a real broker and
a real Celery worker pool): a plan delivered many times runs once; 50 concurrent submissions with
one idempotency key make one plan."""

import concurrent.futures
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.db import connection

from apps.plans import services
from apps.plans.models import Plan
from apps.portals.services import portal_upsert
from apps.sandbox.selectors import sandbox_method_calls, sandbox_records
from apps.sandbox.services import sandbox_portal_ensure, sandbox_webhook_create
from tests.services import needs_broker, needs_postgres

pytestmark = [
    pytest.mark.services,
    needs_postgres,
    needs_broker,
    pytest.mark.django_db(transaction=True),
]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sandbox_portal(live_server):
    sandbox = sandbox_portal_ensure(slug="svc", rate=50, burst=500)
    user_id, code = sandbox_webhook_create(portal=sandbox)
    portal, _ = portal_upsert(slug="svc", base_url=f"{live_server.url}/sandbox/svc", auth_mode="webhook",
                              secrets={"webhook_code": code}, fields={"webhook_user_id": str(user_id)})
    portal.sandbox = sandbox
    return portal


@pytest.fixture
def worker_pool():
    """A real `celery worker` (prefork, 4 processes) on the test database and the real broker."""
    from controlplane.celery import app

    app.control.purge()
    settings_db = connection.settings_dict
    env = {**os.environ,
           "DATABASE_URL": f"postgres://{settings_db['USER']}@{settings_db['HOST'] or '127.0.0.1'}:"
                           f"{settings_db['PORT'] or 5432}/{settings_db['NAME']}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "controlplane", "worker", "--pool=prefork", "--concurrency=4",
         "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    yield proc
    proc.terminate()
    try:
        output, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
    print(output[-3000:])
    app.control.purge()


def wait_final(plan_id, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        plan = Plan.objects.get(pk=plan_id)
        if plan.status in ("succeeded", "failed", "needs_reconciliation"):
            return plan
        time.sleep(0.2)
    raise AssertionError(f"plan {plan_id} still {Plan.objects.get(pk=plan_id).status} after {timeout}s")


def test_a_plan_delivered_many_times_runs_once(sandbox_portal, make_agent, worker_pool):
    from apps.plans.tasks import execute_plan

    agent = make_agent("svc-agent", portal=sandbox_portal, write="auto")
    plan = services.plan_submit(agent=agent, portal=sandbox_portal, steps=[
        {"name": "call", "method": "crm.lead.add", "params": {"fields": {"TITLE": "exactly once"}}}]).plan
    assert plan.status == "approved"  # the on-commit enqueue already published one message
    for _ in range(7):  # duplicates, as a redelivering broker would send them
        execute_plan.delay(str(plan.pk))
    final = wait_final(plan.pk)
    time.sleep(2)  # let the duplicates be consumed too
    assert final.status == "succeeded", final.error
    assert final.attempts.count() == 1
    assert sandbox_method_calls(portal=sandbox_portal.sandbox, method="crm.lead.add") == 1
    assert [r["TITLE"] for r in sandbox_records(portal=sandbox_portal.sandbox, entity="lead")] == ["exactly once"]


def test_many_plans_across_the_pool_each_run_once(sandbox_portal, make_agent, worker_pool):
    agent = make_agent("svc-agent", portal=sandbox_portal, write="auto")
    plans = [services.plan_submit(agent=agent, portal=sandbox_portal, steps=[
        {"name": "call", "method": "crm.lead.add", "params": {"fields": {"TITLE": f"lead {i}"}}}]).plan
        for i in range(12)]
    finals = [wait_final(p.pk) for p in plans]
    assert {p.status for p in finals} == {"succeeded"}
    titles = sorted(r["TITLE"] for r in sandbox_records(portal=sandbox_portal.sandbox, entity="lead"))
    assert titles == sorted(f"lead {i}" for i in range(12))


def test_fifty_concurrent_submissions_with_one_key_make_one_plan(live_server, sandbox_portal, make_agent):
    agent = make_agent("svc-agent", portal=sandbox_portal)
    body = {"portal": "svc", "method": "crm.lead.add", "params": {"fields": {"TITLE": "once"}}}
    headers = {"Authorization": f"Bearer {agent.token}", "Idempotency-Key": "burst-1"}

    def submit(_):
        response = requests.post(f"{live_server.url}/api/v1/plans", json=body, headers=headers, timeout=30)
        return response.status_code, response.json()

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(submit, range(50)))
    statuses = sorted(code for code, _ in answers)
    assert set(statuses) <= {200, 201, 409}, statuses
    assert statuses.count(201) == 1
    ids = {body["id"] for code, body in answers if code in (200, 201)}
    assert len(ids) == 1
    assert all(body["error"]["code"] == "idempotency_in_progress" for code, body in answers if code == 409)
    assert Plan.objects.filter(agent=agent).count() == 1
