#!/usr/bin/env python
"""Benchmark of auto-batching (apps.plans.executor) against fast_bitrix24, on real infrastructure.

- creates a throwaway PostgreSQL database (BENCH_PG_URL's server, default
  postgres://postgres@127.0.0.1:5432) and migrates it;
- serves the sandbox portal with `manage.py runserver` (threaded): a standard-limit portal,
  2 requests/s drain and a burst of 50;
- submits N single-call write plans (`crm.lead.add`, a unique title each) as one agent whose
  grant's write policy is `auto` (`plans.services.plan_submit`, the API's own service): each is
  approved at once and its `execute_plan` task queued on Redis (BENCH_BROKER_URL, default
  redis://127.0.0.1:6379/13, purged first);
- fills the portal's bucket (and ours, which mirrors it) so the run is paced by the drain from the
  first request: what is measured is the rate *after* the burst;
- starts a real Celery worker with W processes (`--pool=prefork --concurrency=W`) and measures the
  writes the portal ran, from its first write to its last;
- checks every plan: `succeeded`, and its own result is the ID of the lead with its own title;
- then, on the same sandbox with its bucket filled again, sends the same N writes with
  fast_bitrix24 (`Bitrix.call("crm.lead.add", items)`, 50 per batch, its pool set to 1 so it
  paces at 2 req/s from the start like us) and checks its results the same way;
- prints writes/s of each, the ratio, the requests and QUERY_LIMIT_EXCEEDED answers the sandbox
  counted for each. It asserts nothing: the figures are for people.

Usage: .venv/bin/python bench/batch_bench.py [--plans 1000] [--workers 2] [--rate 2] [--burst 50]
       [--skip-fast-bitrix24] [--keep-db]
"""

import argparse
import asyncio
import base64
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from limiter_bench import free_port, wait_http  # noqa: E402


def fill_bucket(url: str, burst: int) -> int:
    """Spend the sandbox portal's burst with cheap calls until it refuses one; returns the calls."""
    import requests

    for sent in range(1, burst * 2 + 1):
        body = requests.post(url + "server.time", json={}, timeout=10).json()
        if body.get("error") == "QUERY_LIMIT_EXCEEDED":
            return sent
    return burst * 2


def watch(count, target: int, timeout: float) -> tuple[int, float | None, float | None]:
    """Poll `count()` until it reaches `target`: (final count, time of first change, time of last)."""
    start = time.time()
    first = last = None
    seen = count()
    base = seen
    while time.time() - start < timeout and seen - base < target:
        now_seen = count()
        if now_seen != seen:
            now = time.time()
            first = first or now
            last, seen = now, now_seen
        time.sleep(0.05)
    return seen - base, first, last


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=2.0)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--skip-fast-bitrix24", action="store_true")
    parser.add_argument("--with-burst", action="store_true",
                        help="start both runs with the burst available (an empty bucket) instead of drained; "
                             "fast_bitrix24 then uses its default pool of 50")
    parser.add_argument("--keep-db", action="store_true")
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
        "AUDIT_KEYS": os.environ.get("AUDIT_KEYS", "b1:" + base64.b64encode(secrets.token_bytes(32)).decode()),
        "ENV_FILE": "",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SANDBOX_ENABLED": "1",
        "PORTAL_ALLOW_LOOPBACK_HTTP": "1",
        "SANDBOX_BASE_URL": site,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker,
        "DATA_DIR": str(data_dir),
        "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
    }
    os.environ.update(env)
    python = sys.executable
    procs: list[subprocess.Popen] = []
    try:
        print(f"database {db_name}, broker {broker}, sandbox at {site}, {args.plans} plans, "
              f"{args.workers} worker processes, portal {args.rate:g} req/s burst {args.burst}")
        subprocess.run([python, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)

        import django

        django.setup()
        from django.db.models import Count

        from apps.agents.services import agent_create
        from apps.bitrix.models import PortalLimiter
        from apps.plans.models import Plan
        from apps.plans.services import plan_submit
        from apps.policy.services import grant_upsert
        from apps.portals.models import Credential, Portal
        from apps.sandbox.selectors import sandbox_counters, sandbox_method_calls, sandbox_records
        from apps.sandbox.services import sandbox_portal_ensure, sandbox_reset_limits, sandbox_webhook_create
        from controlplane.celery import app as celery_app

        sandbox = sandbox_portal_ensure(slug="bench", rate=args.rate, burst=args.burst)
        sandbox_reset_limits(portal=sandbox)
        user_id, code = sandbox_webhook_create(portal=sandbox)
        portal = Portal.objects.create(slug="bench", base_url=f"{site}/sandbox/bench",
                                       rate_per_second=args.rate, burst=args.burst)
        Credential.objects.create(portal=portal, webhook_user_id=user_id, webhook_code=code)
        webhook = f"{site}/sandbox/bench/rest/{user_id}/{code}/"
        agent, _token = agent_create(slug="bench-agent")
        grant_upsert(agent=agent, portal=portal, pack="core", write="auto")

        log = open(data_dir / "batch_bench.log", "w")  # noqa: SIM115
        procs.append(subprocess.Popen(
            [python, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
            # runserver serves each request on a new thread: persistent connections would pile up
            cwd=ROOT, env={**env, "CONN_MAX_AGE": "0"}, stdout=log, stderr=subprocess.STDOUT))
        wait_http(f"{site}/healthz")
        celery_app.control.purge()

        # 1. the plans, queued before any worker runs
        started = time.time()
        plan_ids = []
        for i in range(args.plans):
            steps = [{"name": "create", "method": "crm.lead.add", "params": {"fields": {"TITLE": f"cp {i}"}}}]
            plan_ids.append((plan_submit(agent=agent, portal=portal, steps=steps).plan.pk, f"cp {i}"))
        submit_s = time.time() - started
        print(f"submitted              : {args.plans} plans in {submit_s:.1f} s ({args.plans / submit_s:.0f}/s, "
              f"one process, not part of the rate below)")

        # 2. no burst left: the portal's bucket and ours are full
        if args.with_burst:
            filled = 0
        else:
            filled = fill_bucket(webhook, args.burst)
            PortalLimiter.objects.update_or_create(portal=portal, defaults={"level": float(args.burst),
                                                                            "updated_at": time.time()})
        before = sandbox_counters(portal=sandbox)
        procs.append(subprocess.Popen(
            [python, "-m", "celery", "-A", "controlplane", "worker", "--pool=prefork",
             f"--concurrency={args.workers}", f"--loglevel={env['LOG_LEVEL']}", "--without-gossip", "--without-mingle",
             "--without-heartbeat", "-n", f"batch-{db_name}@%h"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        ideal = args.plans / 50 / args.rate
        done, first, last = watch(lambda: sandbox_method_calls(portal=sandbox, method="crm.lead.add"),
                                  args.plans, timeout=max(120.0, ideal * 6))
        time.sleep(1.0)  # let the workers store the last answers
        deadline = time.time() + 30
        while time.time() < deadline and Plan.objects.filter(status__in=["approved", "executing"]).exists():
            time.sleep(0.2)
        after = sandbox_counters(portal=sandbox)
        by_status = dict(Plan.objects.values_list("status").annotate(n=Count("pk")))
        leads = {lead["TITLE"]: int(lead["ID"]) for lead in sandbox_records(portal=sandbox, entity="lead")}
        results = dict(Plan.objects.values_list("pk", "result"))
        correct = sum(1 for pk, title in plan_ids  # a plan that never ran and a lead never written are not a match
                      if leads.get(title) is not None
                      and (results.get(pk) or {}).get("steps", {}).get("create", {}).get("result") == leads.get(title))
        span = (last - first) if first and last else float("nan")
        # the first batch's writes mark the start of the window, so they are not counted in it
        first_batch = min(50, done)
        ours = (done - first_batch) / span if span and span > 0 and done > first_batch else float("nan")
        print(f"bucket filled with     : {filled} calls before the run")
        print(f"writes run by portal   : {done}/{args.plans}, first to last in {span:.1f} s "
              f"(ideal ~{(args.plans - 50) / 50 / args.rate:.1f} s)")
        label = "writes/s (burst free)" if args.with_burst else "writes/s after burst  "
        print(f"{label} : {ours:.1f} (the drain alone allows {50 * args.rate:.0f})")
        print(f"portal requests        : {after['requests_total'] - before['requests_total']}")
        print(f"QUERY_LIMIT_EXCEEDED   : {after['query_limit_refusals'] - before['query_limit_refusals']}")
        print(f"plans by status        : {by_status}")
        print(f"own result correct     : {correct}/{args.plans}")

        if args.skip_fast_bitrix24:
            return 0 if correct == args.plans else 1

        # 3. fast_bitrix24, the same writes, the same sandbox, its bucket full again
        import logging

        from fast_bitrix24 import BitrixAsync

        logging.getLogger("fast_bitrix24").setLevel(logging.WARNING)

        if args.with_burst:
            sandbox_reset_limits(portal=sandbox)
        else:
            time.sleep(2)
            fill_bucket(webhook, args.burst)
        before = sandbox_counters(portal=sandbox)
        items = [{"fields": {"TITLE": f"fb {i}"}} for i in range(args.plans)]

        async def run():
            b = BitrixAsync(webhook, verbose=False, ssl=False, request_pool_size=50 if args.with_burst else 1,
                            requests_per_second=args.rate)
            return await b.call("crm.lead.add", items)

        t0 = time.time()
        try:
            answers = asyncio.run(run())
        except Exception as exc:  # noqa: BLE001 - reported, not hidden
            answers = None
            failure = f"{type(exc).__name__}: {exc}"
        fb_span = time.time() - t0
        after = sandbox_counters(portal=sandbox)
        leads = {lead["TITLE"]: int(lead["ID"]) for lead in sandbox_records(portal=sandbox, entity="lead")}
        if answers is None:
            written = sum(1 for title in leads if title.startswith("fb "))
            print(f"fast_bitrix24          : FAILED after {fb_span:.1f} s ({failure}); it wrote {written} of "
                  f"{args.plans} leads; {after['requests_total'] - before['requests_total']} requests, "
                  f"QUERY_LIMIT_EXCEEDED {after['query_limit_refusals'] - before['query_limit_refusals']}")
            return 0 if correct == args.plans else 1
        fb_correct = sum(1 for i, answer in enumerate(answers) if int(answer) == leads.get(f"fb {i}"))
        wrong = [(i, answer, leads.get(f"fb {i}")) for i, answer in enumerate(answers)
                 if int(answer) != leads.get(f"fb {i}")]
        if wrong:
            same_set = {int(a) for a in answers} == {v for k, v in leads.items() if k.startswith("fb ")}
            print(f"fast_bitrix24 mismatches (index, answer, ID of the lead with that item's title): {wrong[:4]}; "
                  f"the answers are {'the right IDs in another order' if same_set else 'not the IDs created'}")
        theirs = args.plans / fb_span
        print(f"fast_bitrix24          : {args.plans} writes in {fb_span:.1f} s = {theirs:.1f} writes/s, "
              f"{after['requests_total'] - before['requests_total']} requests, "
              f"QUERY_LIMIT_EXCEEDED {after['query_limit_refusals'] - before['query_limit_refusals']}, "
              f"results correct {fb_correct}/{args.plans}")
        print(f"ratio control plane / fast_bitrix24: {ours / theirs:.2f}")
        return 0 if correct == args.plans else 1
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
