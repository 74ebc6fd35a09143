#!/usr/bin/env python
"""Benchmark of the shared per-portal limiter (apps.bitrix.limiter) on real infrastructure.

- creates a throwaway PostgreSQL database (DATABASE_URL's server, default
  postgres://postgres@127.0.0.1:5432) and migrates it;
- serves the sandbox portal with `manage.py runserver` (threaded), bucket 2 req/s, burst 50;
- starts 4 Celery worker processes (`celery worker --pool=prefork --concurrency=4`) on Redis
  (BENCH_BROKER_URL, default redis://127.0.0.1:6379/13, purged first);
- pushes 300 read calls: by default as 300 read plans an agent submits (policy `auto`), each
  executed by `apps.plans.tasks.execute_plan` (executor, client, shared limiter, retries) —
  the product's own path; `--via task` sends them through `apps.bitrix.tasks.bench_call`
  (client and limiter only);
- prints the achieved rate, the fraction of the drain used and the QUERY_LIMIT_EXCEEDED answers
  counted by the sandbox. It asserts nothing: the figures are for people.

Usage: .venv/bin/python bench/limiter_bench.py [--calls 300] [--rate 2] [--burst 50] [--via plans|task]
       [--keep-db]
"""

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0) -> None:
    import requests

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise SystemExit(f"server at {url} did not come up")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rate", type=float, default=2.0)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--method", default="server.time")
    parser.add_argument("--via", choices=["plans", "task"], default="plans")
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--timeout", type=float, default=0, help="seconds to wait for the calls (default: derived)")
    args = parser.parse_args()

    import psycopg

    server_url = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
    parts = urlsplit(server_url)
    db_name = f"cp_bench_{secrets.token_hex(4)}"
    admin_dsn = f"{parts.scheme}://{parts.netloc}/postgres"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    database_url = f"{parts.scheme}://{parts.netloc}/{db_name}"
    broker = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/13")
    port = free_port()
    site = f"http://127.0.0.1:{port}"
    data_dir = ROOT / "var" / "bench"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DEBUG": "0",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-secret-key-" + secrets.token_hex(8)),
        "FIELD_ENCRYPTION_KEYS": os.environ.get(
            "FIELD_ENCRYPTION_KEYS", "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0wMDAwMDA="
        ),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SANDBOX_ENABLED": "1",
        "PORTAL_ALLOW_LOOPBACK_HTTP": "1",
        "SANDBOX_BASE_URL": site,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker,
        "DATA_DIR": str(data_dir),
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
    }
    os.environ.update(env)
    python = sys.executable
    procs: list[subprocess.Popen] = []
    try:
        print(f"database {db_name}, broker {broker}, sandbox at {site}")
        subprocess.run([python, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)

        import django

        django.setup()
        from apps.bitrix.models import PortalLimiter
        from apps.portals.models import Credential, Portal
        from apps.sandbox.selectors import sandbox_counters, sandbox_method_calls
        from apps.sandbox.services import sandbox_portal_ensure, sandbox_reset_limits, sandbox_webhook_create
        from controlplane.celery import app as celery_app

        sandbox = sandbox_portal_ensure(slug="bench", rate=args.rate, burst=args.burst)
        sandbox_reset_limits(portal=sandbox)
        user_id, code = sandbox_webhook_create(portal=sandbox)
        portal = Portal.objects.create(slug="bench", base_url=f"{site}/sandbox/bench",
                                       rate_per_second=args.rate, burst=args.burst)
        Credential.objects.create(portal=portal, webhook_user_id=user_id, webhook_code=code)
        PortalLimiter.objects.filter(pk=portal.pk).delete()

        log = open(data_dir / "bench.log", "w")  # noqa: SIM115
        procs.append(subprocess.Popen(
            [python, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        wait_http(f"{site}/healthz")
        celery_app.control.purge()
        procs.append(subprocess.Popen(
            [python, "-m", "celery", "-A", "controlplane", "worker", "--pool=prefork",
             f"--concurrency={args.workers}", "--loglevel=WARNING", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "-n", f"bench-{db_name}@%h"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        time.sleep(4)  # let the pool come up before the clock starts

        from apps.bitrix.tasks import bench_call

        submit = None
        if args.via == "plans":
            from apps.agents.services import agent_create
            from apps.plans.services import plan_submit
            from apps.policy.services import grant_upsert

            agent, _token = agent_create(slug="bench-agent")
            grant_upsert(agent=agent, portal=portal, pack="core")
            steps = [{"name": "call", "method": args.method, "params": {}}]

            def submit():
                plan_submit(agent=agent, portal=portal, steps=steps)  # auto: enqueued on commit
        start = time.time()
        for _ in range(args.calls):
            if submit:
                submit()
            else:
                bench_call.delay(portal.pk, args.method)
        expected = (args.calls - args.burst) / args.rate if args.calls > args.burst else 5
        timeout = args.timeout or expected * 1.5 + 60
        done = 0
        last_done_at = start
        while time.time() - start < timeout:
            now_done = sandbox_method_calls(portal=sandbox, method=args.method)
            if now_done != done:
                done, last_done_at = now_done, time.time()
            if done >= args.calls:
                break
            time.sleep(0.1)
        elapsed = last_done_at - start
        counters = sandbox_counters(portal=sandbox)
        achieved = done / elapsed if elapsed > 0 else float("nan")
        sustained = (done - args.burst) / elapsed if elapsed > 0 and done > args.burst else float("nan")
        print(f"calls completed        : {done}/{args.calls} in {elapsed:.1f} s "
              f"(ideal ~{max(0.0, (args.calls - args.burst + 1) / args.rate):.1f} s)")
        print(f"achieved rate          : {achieved:.3f} req/s overall")
        print(f"rate after the burst   : {sustained:.3f} req/s = {sustained / args.rate:.1%} of the "
              f"{args.rate:g} req/s drain")
        print(f"QUERY_LIMIT_EXCEEDED   : {counters['query_limit_refusals']}")
        print(f"requests seen by portal: {counters['requests_total']}")
        if args.via == "plans":
            from django.db.models import Count

            from apps.plans.models import Plan

            by_status = dict(Plan.objects.values_list("status").annotate(n=Count("pk")))
            print(f"plans by status        : {by_status}")
        return 0 if done >= args.calls else 1
    finally:
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: BLE001
            pass
        if not args.keep_db:
            with psycopg.connect(admin_dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
