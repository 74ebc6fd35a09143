"""The offline-queue worker across processes (real PostgreSQL, a real broker, real Celery
workers): a worker killed (SIGKILL) between event.offline.get and event.offline.clear; the next
worker re-fetches the reserved batch by its process_id, and every event is processed exactly once.

Run twice: against the stub of tests/integration/events/stub.py (which records every request, so
the re-fetch by process_id is seen on the wire) and against the sandbox portal's own offline queue
served over real HTTP by this process (the path `make run` uses).
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
from tests.services import needs_broker, needs_postgres

pytestmark = [
    pytest.mark.services,
    needs_postgres,
    needs_broker,
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


@pytest.fixture
def sandbox_offline(live_server, settings, monkeypatch):
    """The sandbox portal served by this process's live server, our app installed by its
    administrator, bound offline to ONCRMLEADADD, and `kill_at_clear(pid)` to make its
    event.offline.clear kill that worker and fail (the worker dies between get and clear)."""
    import dataclasses

    import requests

    from apps.events.bindings import binding_add
    from apps.events.services import event_settings_update
    from apps.portals.models import AuthMode, Credential, OAuthApp, Portal
    from apps.sandbox import registry
    from apps.sandbox.errors import SandboxError
    from apps.sandbox.services import (
        sandbox_application_token,
        sandbox_oauth_client_create,
        sandbox_oauth_issue,
        sandbox_portal_ensure,
        sandbox_reset_limits,
        sandbox_set_limits,
        sandbox_webhook_create,
    )

    settings.SANDBOX_BASE_URL = live_server.url
    sandbox = sandbox_portal_ensure(slug="svc-sb-events")
    client_id, client_secret = sandbox_oauth_client_create()
    tokens = sandbox_oauth_issue(portal=sandbox, client_id=client_id, user_id=1)
    app = OAuthApp.objects.create(client_id=client_id, client_secret=client_secret, name="sandbox app",
                                  token_url=f"{live_server.url}/sandbox/oauth/token/")
    portal = Portal.objects.create(slug="svc-sb-events", base_url=f"{live_server.url}/sandbox/svc-sb-events",
                                   auth_mode=AuthMode.OAUTH, member_id=tokens["member_id"])
    Credential.objects.create(portal=portal, oauth_app=app, access_token=tokens["access_token"],
                              refresh_token=tokens["refresh_token"],
                              application_token=sandbox_application_token(portal=sandbox, client_id=client_id))
    event_settings_update(portal=portal, offline_events=True)
    binding_add(portal=portal, event="ONCRMLEADADD", offline=True)

    def add_leads(n):
        sandbox_set_limits(portal=sandbox, burst=100_000)
        user_id, code = sandbox_webhook_create(portal=sandbox, user_id=3, code="someoneelse0123")
        hook = f"{live_server.url}/sandbox/svc-sb-events/rest/{user_id}/{code}"
        ids = [requests.post(f"{hook}/crm.lead.add.json", json={"fields": {"TITLE": f"Lead {i}"}}, timeout=10)
               .json()["result"] for i in range(n)]
        sandbox_reset_limits(portal=sandbox)
        return ids

    killed: list[str] = []
    real = registry.V2_METHODS["event.offline.clear"]

    def kill_at_clear(pid):
        def handler(ctx, params):
            if not killed:
                os.kill(pid, signal.SIGKILL)
                killed.append(params.get("process_id", ""))
                raise SandboxError("INTERNAL_SERVER_ERROR", "the caller is gone", status=500)
            return real.handler(ctx, params)

        monkeypatch.setitem(registry.V2_METHODS, "event.offline.clear", dataclasses.replace(real, handler=handler))

    return sandbox, portal, add_leads, kill_at_clear, killed


def test_worker_killed_between_get_and_clear_on_the_sandbox(sandbox_offline):
    """The same kill against the sandbox portal's own offline queue (point 6's semantics)."""
    from apps.events.tasks import drain_offline_queue
    from apps.sandbox.models import SandboxOfflineEvent
    from controlplane.celery import app

    sandbox, portal, add_leads, kill_at_clear, killed = sandbox_offline
    app.control.purge()
    ids = add_leads(120)
    assert SandboxOfflineEvent.objects.filter(portal=sandbox).count() == 120
    refusals_before = type(sandbox).objects.get(pk=sandbox.pk).query_limit_refusals

    victim = start_worker("--pool=solo")
    kill_at_clear(victim.pid)
    try:
        drain_offline_queue.delay(portal.pk)
        victim.wait(timeout=60)
    finally:
        stop(victim)
    assert killed, "the worker was not killed at event.offline.clear"
    reserved = EventSettings.objects.get(portal=portal).process_id
    assert reserved and reserved == killed[0]  # saved before processing, survives the kill
    assert SandboxOfflineEvent.objects.filter(portal=sandbox).count() == 120  # nothing cleared
    assert set(SandboxOfflineEvent.objects.filter(portal=sandbox).exclude(process_id="")
               .values_list("process_id", flat=True)) == {reserved}
    stored_before_kill = InboundEvent.objects.filter(portal=portal).count()
    assert 0 < stored_before_kill < 120

    survivor = start_worker("--pool=prefork", "--concurrency=2")
    try:
        wait_for(lambda: not SandboxOfflineEvent.objects.filter(portal=sandbox).exists(), 90,
                 "the sandbox's offline queue was not drained",
                 tick=lambda: [drain_offline_queue.delay(portal.pk) for _ in range(2)])
    finally:
        stop(survivor)
    app.control.purge()

    events = InboundEvent.objects.filter(portal=portal)
    assert events.count() == 120
    assert sorted(int(e.data["FIELDS"]["ID"]) for e in events) == sorted(ids)
    assert {(e.status, e.attempts) for e in events} == {("processed", 1)}
    assert len({e.feed_seq for e in events}) == 120
    assert type(sandbox).objects.get(pk=sandbox.pk).query_limit_refusals == refusals_before
    assert EventSettings.objects.get(portal=portal).process_id == ""
