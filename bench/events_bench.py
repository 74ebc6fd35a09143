#!/usr/bin/env python
"""Benchmark of the inbound event handler (POST /hooks/bitrix24/events) and the offline drain.

Handler:
- creates a throwaway PostgreSQL database (BENCH_PG_URL's server, default
  postgres://postgres@127.0.0.1:5432) and migrates it; registers one OAuth portal with its
  member_id and (encrypted) application_token;
- serves the project with gunicorn (`--workers` sync workers, 4 by default) on 127.0.0.1; a stored
  event wakes its portal's processing (one queued run per portal while none is pending, on Redis:
  BENCH_BROKER_URL, default redis://127.0.0.1:6379/7, purged before and after; no worker consumes
  it, so only the handler is measured);
- loads it with wrk (`--duration` seconds, `--concurrency` connections, a distinct ONCRMLEADADD
  delivery per request built in Lua; sync workers close each connection) or, without wrk, posts
  `--events` deliveries from `--concurrency` Python client threads;
- prints events/s, latency percentiles, the answers by status, the rows stored, the CPU each
  stored event costs (web, PostgreSQL, Redis, wrk) and the load average before and after.

Offline drain (`--drain N`, default 1000): N records in the offline queue of a sandbox portal
served by the same gunicorn (standard limits, 2 req/s burst 50; our OAuth app installed by its
administrator) drained in this process by `apps.events.offline.offline_drain` (get clear=0 ->
store -> process -> clear), printing events/s, requests and refusals.

It asserts nothing: the figures are for people (bench/README.md keeps the latest).

Usage: .venv/bin/python bench/events_bench.py [--duration 20] [--concurrency 8] [--workers 4] [--drain 1000]
       [--client wrk|python] [--events 5000] [--keep-db]
"""

import argparse
import base64
import concurrent.futures
import http.client
import os
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MEMBER_ID = "a223c6b3710f85df22e9377d6c4f7553"
APP_TOKEN = "51856fefc120afa4b628cc82d3935cce"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(port: int, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server on port {port} did not come up")


def body_for(i: int) -> bytes:
    return urlencode([
        ("event", "ONCRMLEADADD"), ("event_handler_id", "707"), ("data[FIELDS][ID]", str(1000000 + i)),
        ("ts", str(1742807175 + i // 1000)), ("auth[access_token]", "s6p6eclrvim6da22ft9ch94ekreb52lv"),
        ("auth[expires_in]", "3600"), ("auth[scope]", "crm"), ("auth[domain]", "some-domain.bitrix24.com"),
        ("auth[server_endpoint]", "https://oauth.bitrix.info/rest/"), ("auth[status]", "L"),
        ("auth[client_endpoint]", "https://some-domain.bitrix24.com/rest/"), ("auth[member_id]", MEMBER_ID),
        ("auth[refresh_token]", "4s386p3q0tr8dy89xvmt96234v3dljg8"), ("auth[application_token]", APP_TOKEN),
    ]).encode()


def post(port: int, body: bytes) -> tuple[int, float]:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/hooks/bitrix24/events", body,
                     {"Content-Type": "application/x-www-form-urlencoded"})
        response = conn.getresponse()
        response.read()
        status = response.status
    except OSError:
        status = 0
    finally:
        conn.close()
    return status, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def bench_handler(args, port: int) -> None:
    bodies = [body_for(i) for i in range(args.events)]
    for body in bodies[:50]:  # warm-up: imports, connections (stored, then counted separately)
        post(port, body)
    bodies = bodies[50:]
    statuses: Counter = Counter()
    latencies: list[float] = []
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        for status, latency in pool.map(lambda b: post(port, b), bodies):
            statuses[status] += 1
            latencies.append(latency)
    elapsed = time.perf_counter() - start
    from apps.events.models import InboundEvent

    print(f"requests               : {len(bodies)} in {elapsed:.2f} s, {args.concurrency} client threads, "
          f"gunicorn {args.workers} sync workers")
    print(f"events/s               : {len(bodies) / elapsed:.0f}")
    print(f"latency ms p50/p95/p99 : {percentile(latencies, .5) * 1000:.1f} / {percentile(latencies, .95) * 1000:.1f}"
          f" / {percentile(latencies, .99) * 1000:.1f} (mean {statistics.mean(latencies) * 1000:.1f}, "
          f"max {max(latencies) * 1000:.1f})")
    print(f"answers by status      : {dict(statuses)}")
    print(f"events stored          : {InboundEvent.objects.count()} (incl. 50 warm-up)")


WRK_SCRIPT = r"""
-- Distinct ONCRMLEADADD deliveries: thread t posts IDs t*10^7 + n (wrk's threads have their own state).
counter = 0
local created = 0
function setup(thread) created = created + 1; thread:set("tid", created) end
function init(args) counter = 0 end
local function enc(s) return (s:gsub("[^%w%-_%.~]", function(c) return string.format("%%%02X", string.byte(c)) end)) end
local fixed = "&ts=TS&auth[access_token]=s6p6eclrvim6da22ft9ch94ekreb52lv&auth[expires_in]=3600&auth[scope]=crm"
  .. "&auth[domain]=some-domain.bitrix24.com&auth[server_endpoint]=https%3A%2F%2Foauth.bitrix.info%2Frest%2F"
  .. "&auth[status]=L&auth[client_endpoint]=https%3A%2F%2Fsome-domain.bitrix24.com%2Frest%2F"
  .. "&auth[member_id]=MEMBER&auth[refresh_token]=4s386p3q0tr8dy89xvmt96234v3dljg8&auth[application_token]=TOKEN"
function request()
  counter = counter + 1
  local id = tid * 10000000 + counter
  local body = "event=ONCRMLEADADD&event_handler_id=707&" .. enc("data[FIELDS][ID]") .. "=" .. id .. fixed
  return wrk.format("POST", "/hooks/bitrix24/events",
    {["Content-Type"] = "application/x-www-form-urlencoded"}, body)
end
function done(summary, latency, requests)
  io.write(string.format("WRK %d %d %d %d %d %d %.3f %.3f %.3f %.3f %.3f\n", summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, summary.duration, summary.errors.timeout, summary.errors.connect,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency.mean / 1000, latency.max / 1000))
end
"""


def _load() -> str:
    return "{:.2f} {:.2f} {:.2f} (1, 5, 15 min)".format(*os.getloadavg())


def _cpu(pid: int) -> float:
    """utime + stime of one process, in seconds (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _cpu_snapshot(gunicorn_pid: int, db_name: str) -> dict[str, float]:
    """CPU seconds so far of the web processes, of the PostgreSQL backends serving the bench
    database, and of the Redis server: a machine shared with other work distorts wall time, not
    the CPU each request costs."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [db_name])
        backends = [row[0] for row in cursor.fetchall()]
    redis = [int(p) for p in subprocess.run(["pgrep", "-x", "redis-server"], capture_output=True, text=True)
             .stdout.split()]
    return {"web": sum(_cpu(p) for p in [gunicorn_pid, *_children(gunicorn_pid)]),
            "postgres": sum(_cpu(p) for p in backends), "redis": sum(_cpu(p) for p in redis),
            "backends": backends}


def bench_handler_wrk(args, port: int, gunicorn_pid: int, db_name: str) -> None:
    """The load from wrk (C, one process, `--concurrency` connections on 2 threads), so the client
    costs little of the 2 cores; the body is built in Lua with a distinct ID per request."""
    from apps.events.models import InboundEvent

    for body in [body_for(i) for i in range(50)]:  # warm-up
        post(port, body)
    script = ROOT / "var" / "bench" / "events_wrk.lua"
    script.write_text(WRK_SCRIPT.replace("MEMBER", MEMBER_ID).replace("TOKEN", APP_TOKEN)
                      .replace("TS", str(int(time.time()))))
    before = _cpu_snapshot(gunicorn_pid, db_name)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(["wrk", "-t", "2", "-c", str(args.concurrency), "-d", f"{args.duration}s", "--latency",
                          "-s", str(script), f"http://127.0.0.1:{port}"], capture_output=True, text=True, check=True)
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk has been waited for: its CPU is in
    time.sleep(1)  # requests in flight when wrk stopped
    after = _cpu_snapshot(gunicorn_pid, db_name)
    wrk_cpu = (children_after.ru_utime + children_after.ru_stime
               - children_before.ru_utime - children_before.ru_stime)
    line = next(x for x in out.stdout.splitlines() if x.startswith("WRK "))
    f = line.split()
    total, socket_errors, bad_status, duration_us = int(f[1]), int(f[2]), int(f[3]), int(f[4])
    p50, p95, p99, mean, worst = (float(x) for x in f[7:12])
    seconds = duration_us / 1e6
    stored = InboundEvent.objects.count() - 50
    print(f"requests               : {total} in {seconds:.2f} s, wrk 2 threads {args.concurrency} connections, "
          f"gunicorn {args.workers} sync workers")
    print(f"events/s               : {total / seconds:.0f} answered, {stored / seconds:.0f} stored")
    print(f"latency ms p50/p95/p99 : {p50:.1f} / {p95:.1f} / {p99:.1f} (mean {mean:.1f}, max {worst:.1f})")
    print(f"errors                 : {bad_status} non-2xx answers, {socket_errors} socket errors")
    print(f"events stored          : {stored} (+50 warm-up; includes requests still in flight when wrk stopped)")
    # PostgreSQL backends that existed before the run (persistent connections) are the ones measured
    pg = sum(_cpu(p) for p in before["backends"]) and after["postgres"] - before["postgres"]
    web, redis = after["web"] - before["web"], after["redis"] - before["redis"]
    per = {name: value / stored * 1000 for name, value in (("web", web), ("postgres", pg), ("redis", redis))}
    cost = sum(per.values())
    client = wrk_cpu / stored * 1000
    print(f"CPU per stored event   : web {per['web']:.2f} ms + PostgreSQL {per['postgres']:.2f} ms + Redis "
          f"{per['redis']:.2f} ms = {cost:.2f} ms -> 2 cores serve at most {2000 / cost:.0f} events/s; "
          f"with wrk's {client:.2f} ms: {2000 / (cost + client):.0f} events/s")


def bench_drain(args, port: int) -> None:
    """N records in the sandbox portal's offline queue (served by the same gunicorn), drained in
    this process through the transport and its limiter, at the standard limit."""
    from apps.events.models import InboundEvent
    from apps.events.offline import offline_drain
    from apps.events.services import event_settings_update
    from apps.portals.models import AuthMode, Credential, OAuthApp, Portal
    from apps.sandbox.events import _data, _message_id
    from apps.sandbox.models import SandboxOfflineEvent, SandboxPortal
    from apps.sandbox.services import (
        sandbox_application_token,
        sandbox_oauth_client_create,
        sandbox_oauth_issue,
        sandbox_portal_ensure,
    )

    served = f"http://127.0.0.1:{port}"
    sandbox = sandbox_portal_ensure(slug="drain")  # standard limits: 2 req/s, burst 50
    client_id, client_secret = sandbox_oauth_client_create()
    tokens = sandbox_oauth_issue(portal=sandbox, client_id=client_id, user_id=1)
    app = OAuthApp.objects.create(client_id=client_id, client_secret=client_secret, name="bench app",
                                  token_url=f"{served}/sandbox/oauth/token/")
    portal = Portal.objects.create(slug="drain", base_url=f"{served}/sandbox/drain", auth_mode=AuthMode.OAUTH,
                                   member_id=tokens["member_id"])
    Credential.objects.create(portal=portal, oauth_app=app, access_token=tokens["access_token"],
                              refresh_token=tokens["refresh_token"],
                              application_token=sandbox_application_token(portal=sandbox, client_id=client_id))
    event_settings_update(portal=portal, offline_events=True)
    now = time.time()
    SandboxOfflineEvent.objects.bulk_create(
        SandboxOfflineEvent(portal=sandbox, client_id=client_id, event_name="ONCRMDEALUPDATE",
                            event_data=_data("deal", "update", i + 1), message_id=_message_id("deal", i + 1),
                            timestamp=now + i / 1000)
        for i in range(args.drain))
    refusals = SandboxPortal.objects.get(pk=sandbox.pk).query_limit_refusals
    requests_before = SandboxPortal.objects.get(pk=sandbox.pk).requests_total
    start = time.perf_counter()
    runs = 0
    while SandboxOfflineEvent.objects.filter(portal=sandbox).exists() and runs < 1000:
        result = offline_drain(portal_id=portal.pk, max_batches=1000)
        runs += 1
        if result.status == "error":
            raise SystemExit(f"drain failed: {result.error}")
    elapsed = time.perf_counter() - start
    after = SandboxPortal.objects.get(pk=sandbox.pk)
    stored = InboundEvent.objects.filter(portal=portal, status="processed").count()
    print(f"offline drain          : {stored}/{args.drain} events in {elapsed:.2f} s = "
          f"{stored / elapsed:.0f} events/s ({after.requests_total - requests_before} requests to the sandbox, "
          f"{after.query_limit_refusals - refusals} QUERY_LIMIT_EXCEEDED; sandbox portal 2 req/s burst 50)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--client", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python",
                        help="load generator (default wrk when installed: apt-get install wrk)")
    parser.add_argument("--duration", type=int, default=20, help="seconds of load (wrk)")
    parser.add_argument("--drain", type=int, default=1000, help="offline records to drain (0: skip)")
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args()

    import psycopg

    server_url = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
    parts = urlsplit(server_url)
    db_name = f"cp_events_bench_{secrets.token_hex(4)}"
    admin_dsn = f"{parts.scheme}://{parts.netloc}/postgres"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    broker = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/7")
    port = free_port()
    data_dir = ROOT / "var" / "bench"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DEBUG": "0",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-secret-key-" + secrets.token_hex(8)),
        "FIELD_ENCRYPTION_KEYS": os.environ.get(
            "FIELD_ENCRYPTION_KEYS", "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0wMDAwMDA="),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PORTAL_ALLOW_LOOPBACK_HTTP": "1",
        "SANDBOX_BASE_URL": f"http://127.0.0.1:{port}",
        "SANDBOX_ENABLED": "1",  # the drain's portal
        "AUDIT_KEYS": os.environ.get("AUDIT_KEYS", "bench:" + base64.b64encode(secrets.token_bytes(32)).decode()),
        "DATABASE_URL": f"{parts.scheme}://{parts.netloc}/{db_name}",
        "CELERY_BROKER_URL": broker,
        "CACHE_URL": os.environ.get("BENCH_CACHE_URL", "redis://127.0.0.1:6379/15"),
        "DATA_DIR": str(data_dir),
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
    }
    os.environ.update(env)
    python = sys.executable
    gunicorn = None
    try:
        print(f"database {db_name}, broker {broker}, gunicorn on 127.0.0.1:{port}")
        subprocess.run([python, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)

        import django

        django.setup()
        from apps.portals.models import AuthMode, Credential, Portal
        from controlplane.celery import app as celery_app

        portal = Portal.objects.create(slug="bench", base_url="https://some-domain.bitrix24.com",
                                       auth_mode=AuthMode.OAUTH, member_id=MEMBER_ID)
        Credential.objects.create(portal=portal, access_token="a", refresh_token="r", application_token=APP_TOKEN)
        celery_app.control.purge()
        log = open(data_dir / "events_bench.log", "w")  # noqa: SIM115
        gunicorn = subprocess.Popen(
            [python, "-m", "gunicorn", "controlplane.wsgi:application", "--workers", str(args.workers),
             "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "--backlog", "2048"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_http(port)
        print(f"load average before    : {_load()}")
        if args.client == "wrk":
            bench_handler_wrk(args, port, gunicorn.pid, db_name)
        else:
            bench_handler(args, port)
        print(f"load average after     : {_load()}")
        celery_app.control.purge()
        if args.drain:
            bench_drain(args, port)
        return 0
    finally:
        if gunicorn is not None:
            gunicorn.send_signal(signal.SIGTERM)
            try:
                gunicorn.wait(timeout=20)
            except subprocess.TimeoutExpired:
                gunicorn.kill()
        try:
            from controlplane.celery import app as celery_app

            celery_app.control.purge()
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: BLE001
            pass
        if not args.keep_db:
            with psycopg.connect(admin_dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


if __name__ == "__main__":
    raise SystemExit(main())
