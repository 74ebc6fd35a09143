"""Auto-batching across processes (real PostgreSQL, a real broker, a real 2-process Celery worker):
plans of two agents queued at once on a standard-limit sandbox portal go out in batches, each plan
once, each with its own result, and the portal never refuses a request."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from apps.plans import services
from apps.plans.models import Plan
from apps.portals.services import portal_upsert
from apps.sandbox.selectors import sandbox_counters, sandbox_method_calls, sandbox_records
from apps.sandbox.services import sandbox_portal_ensure, sandbox_webhook_create
from tests.services import needs_broker, needs_postgres

pytestmark = [
    pytest.mark.services,
    needs_postgres,
    needs_broker,
    pytest.mark.django_db(transaction=True),
]
ROOT = Path(__file__).resolve().parents[2]
PLANS = 120


@pytest.fixture
def standard_portal(live_server):
    sandbox = sandbox_portal_ensure(slug="std", rate=2, burst=50)
    user_id, code = sandbox_webhook_create(portal=sandbox)
    portal, _ = portal_upsert(slug="std", base_url=f"{live_server.url}/sandbox/std", auth_mode="webhook",
                              secrets={"webhook_code": code}, fields={"webhook_user_id": str(user_id)},
                              rate_per_second=2, burst=50)
    portal.sandbox = sandbox
    return portal


def start_worker(processes: int):
    settings_db = connection.settings_dict
    env = {**os.environ,
           "DATABASE_URL": f"postgres://{settings_db['USER']}@{settings_db['HOST'] or '127.0.0.1'}:"
                           f"{settings_db['PORT'] or 5432}/{settings_db['NAME']}"}
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "controlplane", "worker", "--pool=prefork",
         f"--concurrency={processes}", "--loglevel=WARNING", "--without-gossip", "--without-mingle",
         "--without-heartbeat"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop(proc):
    proc.terminate()
    try:
        output, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
    print(output[-3000:])


def test_plans_of_two_agents_go_out_in_batches_each_with_its_own_result(standard_portal, make_agent):
    from controlplane.celery import app

    app.control.purge()
    agents = [make_agent(f"batch-{n}", portal=standard_portal, write="auto") for n in "ab"]
    plans = []
    for i in range(PLANS):  # queued before any worker runs: they are all ready together
        plans.append((services.plan_submit(agent=agents[i % 2], portal=standard_portal, steps=[
            {"name": "create", "method": "crm.lead.add", "params": {"fields": {"TITLE": f"lead {i}"}}}]).plan,
            f"lead {i}"))
    worker = start_worker(2)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and Plan.objects.exclude(
                status__in=["succeeded", "failed", "needs_reconciliation"]).exists():
            time.sleep(0.5)
    finally:
        stop(worker)
        app.control.purge()
    sb = standard_portal.sandbox
    leads = {lead["TITLE"]: int(lead["ID"]) for lead in sandbox_records(portal=sb, entity="lead")}
    assert len(leads) == PLANS and sandbox_method_calls(portal=sb, method="crm.lead.add") == PLANS  # each once
    for plan, title in plans:
        plan.refresh_from_db()
        assert plan.status == "succeeded", (plan.status, plan.error)
        assert plan.result == {"steps": {"create": {"result": leads[title], "error": None, "total": None,
                                                    "next": None}}}
        assert plan.attempts.count() == 1
    counters = sandbox_counters(portal=sb)
    assert counters["query_limit_refusals"] == 0
    assert counters["requests_total"] <= PLANS // 10  # batches, not one request per plan
    batched = [p.attempts.get().detail for p, _ in plans]
    assert sum(1 for d in batched if d and d.get("batch", 0) > 1) >= PLANS * 0.9
