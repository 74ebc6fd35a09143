"""Single-flight OAuth refresh across processes (real PostgreSQL, forked processes, real HTTP).

20 calls (4 processes x 5 threads) start with the same expired access token. The token endpoint
(a stub on 127.0.0.1 with rotating refresh tokens: a used refresh token answers invalid_grant,
as Bitrix24 does) must be called exactly once, and every call must succeed."""

import multiprocessing
import threading
import time

import pytest

from tests.integration.bitrix.stub import StubServer
from tests.services import needs_postgres

pytestmark = [
    pytest.mark.services,
    needs_postgres,
    pytest.mark.django_db(transaction=True),
]

PROCS, THREADS = 4, 5


class RotatingPortal:
    def __init__(self):
        self.lock = threading.Lock()
        self.access, self.refresh, self.generation = "access-0", "refresh-0", 0
        self.token_calls = 0
        self.rest_ok = 0
        self.rest_expired = 0

    def __call__(self, seen):
        if seen.path == "/oauth/token/":
            q = {k: v[0] for k, v in seen.query.items()}
            with self.lock:
                self.token_calls += 1
                if q.get("refresh_token") != self.refresh or q.get("client_secret") != "secret":
                    return 400, {"error": "invalid_grant", "error_description": "Invalid grant"}, {}
            time.sleep(0.3)  # a slow token endpoint widens the race
            with self.lock:
                self.generation += 1
                self.access, self.refresh = f"access-{self.generation}", f"refresh-{self.generation}"
                return 200, {"access_token": self.access, "refresh_token": self.refresh, "expires_in": 3600}, {}
        with self.lock:
            if (seen.json or {}).get("auth") == self.access and self.generation > 0:
                self.rest_ok += 1
                return 200, {"result": {"ok": True}, "time": {}}, {}
            self.rest_expired += 1
        return 401, {"error": "expired_token", "error_description": "The access token provided has expired."}, {}


def _worker(portal_id, queue):
    from django.db import connections

    from apps.bitrix.client import BitrixClient

    outcomes = []

    def one():
        try:
            BitrixClient(portal_id).call("user.current", {})
            outcomes.append("ok")
        except Exception as exc:  # noqa: BLE001
            outcomes.append(repr(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=one) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    queue.put(outcomes)


def test_twenty_concurrent_calls_refresh_once():
    from django.db import connections

    from apps.portals.models import AuthMode, Credential, OAuthApp, Portal

    server = StubServer().start()
    rotating = RotatingPortal()
    server.respond = rotating
    try:
        app = OAuthApp.objects.create(name="a", client_id="local.a.1", client_secret="secret",
                                      token_url=f"{server.url}/oauth/token/")
        portal = Portal.objects.create(slug="flight", base_url=f"{server.url}/p", auth_mode=AuthMode.OAUTH,
                                       rate_per_second=100.0, burst=1000)
        Credential.objects.create(portal=portal, oauth_app=app, access_token="access-0", refresh_token="refresh-0")
        connections.close_all()
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(portal.pk, queue)) for _ in range(PROCS)]
        for p in procs:
            p.start()
        outcomes = [o for _ in procs for o in queue.get(timeout=120)]
        for p in procs:
            p.join(timeout=30)
    finally:
        server.stop()
    assert outcomes == ["ok"] * (PROCS * THREADS), outcomes
    assert rotating.token_calls == 1
    cred = Credential.objects.get(portal=portal)
    assert (cred.access_token, cred.refresh_token, cred.status) == ("access-1", "refresh-1", "ok")
