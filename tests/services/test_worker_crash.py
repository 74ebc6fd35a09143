"""Worker crash injection (issue 12, point 4): a real Celery worker (prefork) executes writes
against the sandbox portal over real HTTP; the portal is slow to answer (before running the
write, or after running it with the answer held back), and the process running the task is
killed with SIGKILL at a random moment between the recorded attempt and the answer, at least 10
times; twice the whole worker goes down and is started again. Stale-plan recovery then runs.
Every write must end `needs_reconciliation` or `succeeded`, and the portal must have seen each
write at most once."""

import datetime
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from apps.plans import services
from apps.plans.models import ExecutionAttempt, Plan
from apps.portals.services import portal_upsert
from apps.sandbox.selectors import sandbox_method_calls, sandbox_records
from apps.sandbox.services import (
    sandbox_clear_faults,
    sandbox_portal_ensure,
    sandbox_set_faults,
    sandbox_webhook_create,
)
from tests.services import needs_broker, needs_postgres

pytestmark = [
    pytest.mark.services,
    needs_postgres,
    needs_broker,
    pytest.mark.django_db(transaction=True),
]
ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 13
WHOLE_WORKER_KILLS = {4, 9}  # rounds in which the main process goes down too, then restarts


class Worker:
    """`celery worker --pool=prefork --concurrency=1` on the test database and the real broker."""

    def __init__(self):
        db = connection.settings_dict
        self.env = {**os.environ, "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:"
                                                  f"{db['PORT'] or 5432}/{db['NAME']}"}
        self.proc = None
        self.output = []

    def start(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "controlplane", "worker", "--pool=prefork", "--concurrency=1",
             "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def child(self, timeout=30.0):
        """The pid of the pool process (the one that runs tasks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                    pids = [int(p) for p in f.read().split()]
            except FileNotFoundError:
                pids = []
            if pids:
                return pids[0]
            time.sleep(0.05)
        raise AssertionError("the worker started no pool process")

    def kill_whole(self):
        kill(self.child())
        self.proc.kill()
        self.output.append(self.proc.communicate()[0])

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.output.append(self.proc.communicate(timeout=20)[0])
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.output.append(self.proc.communicate()[0])


@pytest.fixture
def worker():
    from controlplane.celery import app

    app.control.purge()
    w = Worker()
    w.start()
    yield w
    w.stop()
    print("".join(w.output)[-3000:])
    app.control.purge()


@pytest.fixture
def sandbox_portal(live_server):
    sandbox = sandbox_portal_ensure(slug="crash", rate=50, burst=500)
    user_id, code = sandbox_webhook_create(portal=sandbox)
    portal, _ = portal_upsert(slug="crash", base_url=f"{live_server.url}/sandbox/crash", auth_mode="webhook",
                              secrets={"webhook_code": code}, fields={"webhook_user_id": str(user_id)})
    portal.sandbox = sandbox
    return portal


def kill(pid) -> bool:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def recover():
    """Stale recovery as the periodic task runs it, once the plans count as stale."""
    return services.plans_recover_stale(now=timezone.now() + services.stale_after() + datetime.timedelta(seconds=1))


def test_killed_workers_never_send_a_write_twice(sandbox_portal, make_agent, worker):
    rng = random.Random(int(os.environ.get("CRASH_SEED", "0")) or None)
    agent = make_agent("crash-agent", portal=sandbox_portal, write="auto")
    kills, plans, where = 0, [], []
    for round_ in range(ROUNDS):
        slow = rng.uniform(0.4, 1.2)
        # before: the portal waits, then runs the write; after: it runs the write, then holds the answer
        when = rng.choice(["before", "after"])
        if when == "before":
            sandbox_set_faults(portal=sandbox_portal.sandbox, latency=slow, methods=["crm.lead.add"])
        else:
            sandbox_set_faults(portal=sandbox_portal.sandbox, timeout_seconds=slow, timeout_calls=1, when="after",
                               methods=["crm.lead.add"])
        child = worker.child()
        plan = services.plan_submit(agent=agent, portal=sandbox_portal, steps=[
            {"name": "call", "method": "crm.lead.add", "params": {"fields": {"TITLE": f"crash {round_}"}}}]).plan
        plans.append(plan.pk)
        wait_for(lambda: ExecutionAttempt.objects.filter(plan_id=plan.pk).exists(), 60, "the attempt")
        time.sleep(rng.uniform(0.0, slow))  # somewhere between the attempt and the answer
        if Plan.objects.get(pk=plan.pk).status == "executing":
            if round_ in WHOLE_WORKER_KILLS:
                worker.kill_whole()
                worker.start()
                landed = True
            else:
                landed = kill(child)
            if landed:
                kills += 1
                where.append(when)
        sandbox_clear_faults(portal=sandbox_portal.sandbox)
        time.sleep(slow + 0.3)  # the portal's request thread finishes whatever it was doing
        recover()
        final = Plan.objects.get(pk=plan.pk)
        assert final.status in ("needs_reconciliation", "succeeded"), (round_, final.status, final.error)
        wait_for(lambda: worker.child() != child or round_ in WHOLE_WORKER_KILLS or final.status == "succeeded",
                 30, "a new pool process")

    assert kills >= 10, f"only {kills} kills landed between the attempt and the answer"
    time.sleep(1.0)
    recover()
    titles = [r["TITLE"] for r in sandbox_records(portal=sandbox_portal.sandbox, entity="lead")]
    assert sandbox_method_calls(portal=sandbox_portal.sandbox, method="crm.lead.add") == len(titles) <= ROUNDS
    for round_, plan_id in enumerate(plans):
        plan = Plan.objects.get(pk=plan_id)
        assert plan.status in ("needs_reconciliation", "succeeded"), (round_, plan.status)
        assert titles.count(f"crash {round_}") <= 1, f"the portal saw write {round_} more than once"
        assert plan.attempts.count() == 1
        if plan.status == "succeeded":
            assert titles.count(f"crash {round_}") == 1
    print(f"{kills} kills ({where.count('before')} while the portal waited to run the write, "
          f"{where.count('after')} while it held the answer back); {len(titles)} writes reached the portal")
