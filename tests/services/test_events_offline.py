"""The offline-queue worker across processes (real PostgreSQL, a real broker, real Celery
workers): a worker killed (SIGKILL) between event.offline.get and event.offline.clear; the next
worker re-fetches the reserved batch by its process_id, and every event is processed exactly once.

The portal is the stub of tests/integration/events/stub.py (the documented offline-queue
semantics over real HTTP) until the sandbox implements them (issue 9 point 6).
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection

from apps.events.models import EventSettings, InboundEvent
from tests.integration.events.conftest import make_oauth_portal
from tests.integration.events.stub import OfflineQueueStub

ON_POSTGRES = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://"))
pytestmark = [
    pytest.mark.services,
    pytest.mark.skipif(not ON_POSTGRES, reason="needs DATABASE_URL pointing at PostgreSQL"),
    pytest.mark.skipif(os.environ.get("CELERY_BROKER_URL", "memory://").startswith("memory"),
                       reason="needs CELERY_BROKER_URL pointing at Redis or RabbitMQ"),
    pytest.mark.django_db(transaction=True),
]
ROOT = Path(__file__).resolve().parents[2]
LEASE = 3  # seconds: a killed worker's drain lease expires this soon (EVENTS_DRAIN_LEASE_SECONDS)


def start_worker(*args):
    db = connection.settings_dict
    env = {**os.environ, "EVENTS_DRAIN_LEASE_SECONDS": str(LEASE),
           "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"}
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "controlplane", "worker", "--loglevel=WARNING", "--without-gossip",
         "--without-mingle", "--without-heartbeat", *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
    try:
        output, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
    print(output[-3000:])


def wait_for(predicate, timeout, message, tick=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if tick:
            tick()
        time.sleep(0.5)
    raise AssertionError(message)


@pytest.fixture
def stub():
    server = OfflineQueueStub().start()
    yield server
    server.stop()


def test_worker_killed_between_get_and_clear_processes_every_event_once(stub):
    from apps.events.tasks import drain_offline_queue
    from controlplane.celery import app

    app.control.purge()
    portal = make_oauth_portal(stub.base_url, slug="svc-events")
    total = 120
    for i in range(total):
        stub.add("ONCRMLEADADD", {"FIELDS": {"ID": i + 1}})

    victim = start_worker("--pool=solo")
    killed = []

    def kill_at_clear(method, params):
        if method == "event.offline.clear" and not killed:
            os.kill(victim.pid, signal.SIGKILL)
            killed.append(params["process_id"])
            return 500, {"error": "INTERNAL_SERVER_ERROR", "error_description": "the caller is gone"}, {}
        return None

    stub.before_answer = kill_at_clear
    try:
        drain_offline_queue.delay(portal.pk)
        victim.wait(timeout=60)
    finally:
        stop(victim)
    assert killed, "the worker was not killed at event.offline.clear"
    reserved = EventSettings.objects.get(portal=portal).process_id
    assert reserved == killed[0]  # saved before processing, survives the kill
    assert {r["PROCESS_ID"] for r in stub.records()[:50]} == {reserved}
    assert len(stub.records()) == total  # nothing cleared
    assert InboundEvent.objects.filter(portal=portal).count() == 50

    survivor = start_worker("--pool=prefork", "--concurrency=2")
    try:
        # as beat would: ask for drains until the queue is empty (the dead worker's lease expires first)
        wait_for(lambda: not stub.records(), 90, "the offline queue was not drained",
                 tick=lambda: [drain_offline_queue.delay(portal.pk) for _ in range(2)])
    finally:
        stop(survivor)
    app.control.purge()

    events = InboundEvent.objects.filter(portal=portal)
    assert events.count() == total
    assert sorted(e.data["FIELDS"]["ID"] for e in events) == list(range(1, total + 1))
    assert {(e.status, e.attempts) for e in events} == {("processed", 1)}
    assert len({e.feed_seq for e in events}) == total
    refetches = [s.json for s in stub.requests if s.path.endswith("event.offline.get") and s.json.get("process_id")]
    assert refetches and refetches[0]["process_id"] == reserved
    assert stub.errors_answered["QUERY_LIMIT_EXCEEDED"] == 0
    assert EventSettings.objects.get(portal=portal).process_id == ""
