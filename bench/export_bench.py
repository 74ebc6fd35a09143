#!/usr/bin/env python
"""Benchmark of list exports (apps.exports) against fast_bitrix24's get_all, on real infrastructure.

- creates a throwaway PostgreSQL database (BENCH_PG_URL's server, default
  postgres://postgres@127.0.0.1:5432) and migrates it;
- serves the sandbox portal with gunicorn (2 gthread workers x 8 threads; `--server runserver`
  for Django's threaded development server): a standard-limit portal, 2 requests/s drain and a
  burst of 50;
- seeds N leads straight into the sandbox's tables (bulk insert, not through the REST API);
- drains the portal's bucket and ours (it mirrors it) so the run is paced by the drain from its
  first request, as on a portal other work has just used (`--with-burst` starts with the burst
  available instead);
- submits one export (`crm.lead.list`, select ID, TITLE, STATUS_ID, OPPORTUNITY, DATE_CREATE;
  JSON lines) through `apps.exports.services.export_submit` (the API's own service) as an agent
  whose read policy is `auto`, starts a real Celery worker (Redis broker, BENCH_BROKER_URL,
  default redis://127.0.0.1:6379/13, purged first) and waits for the export to succeed;
- checks the file: N lines, every ID once, in order;
- then, on the same sandbox with its bucket drained again, fetches the same list with the same
  select with fast_bitrix24 (`BitrixAsync.get_all`, its defaults but `requests_per_second=2`,
  and a pool of 1 when drained, as batch_bench does) and checks it the same way;
- prints rows/s of each (end to end: from submit to the file; and the fetch window alone:
  first to last batch), requests and QUERY_LIMIT_EXCEEDED answers the sandbox counted for each.
  It asserts nothing: the figures are for people.

Usage: .venv/bin/python bench/export_bench.py [--leads 100000] [--rate 2] [--burst 50]
       [--with-burst] [--server gunicorn|runserver] [--skip-fast-bitrix24] [--keep-db]
"""

import argparse
import asyncio
import json
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

from batch_bench import fill_bucket  # noqa: E402
from limiter_bench import free_port, wait_http  # noqa: E402

SELECT = ["ID", "TITLE", "STATUS_ID", "OPPORTUNITY", "DATE_CREATE"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=2.0)
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--with-burst", action="store_true")
    parser.add_argument("--server", choices=("gunicorn", "runserver"), default="gunicorn")
    parser.add_argument("--skip-fast-bitrix24", action="store_true")
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
        "AUDIT_KEYS": os.environ.get("AUDIT_KEYS", "b1:YXVkaXQta2V5LWZvci1iZW5jaC1vbmx5LTAwMDAwMDA="),
        "ENV_FILE": "",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SANDBOX_ENABLED": "1",
        "PORTAL_ALLOW_LOOPBACK_HTTP": "1",
        "SANDBOX_BASE_URL": site,
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker,
        "DATA_DIR": str(data_dir),
        "EXPORTS_DIR": str(data_dir / "exports"),
        "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
    }
    os.environ.update(env)
    python = sys.executable
    procs: list[subprocess.Popen] = []
    try:
        print(f"database {db_name}, broker {broker}, sandbox at {site} ({args.server}), {args.leads} leads, "
              f"portal {args.rate:g} req/s burst {args.burst}, {'burst free' if args.with_burst else 'bucket drained'}")
        subprocess.run([python, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)

        import django

        django.setup()
        from apps.agents.services import agent_create
        from apps.bitrix.models import PortalLimiter
        from apps.exports import files
        from apps.exports.models import Export
        from apps.exports.services import export_submit
        from apps.policy.services import grant_upsert
        from apps.portals.models import Credential, Portal
        from apps.sandbox.selectors import sandbox_counters
        from apps.sandbox.services import sandbox_portal_ensure, sandbox_reset_limits, sandbox_webhook_create
        from controlplane.celery import app as celery_app
        from tests.integration.exports.seed import seed_leads

        sandbox = sandbox_portal_ensure(slug="bench", rate=args.rate, burst=args.burst)
        sandbox_reset_limits(portal=sandbox)
        user_id, code = sandbox_webhook_create(portal=sandbox)
        portal = Portal.objects.create(slug="bench", base_url=f"{site}/sandbox/bench",
                                       rate_per_second=args.rate, burst=args.burst)
        Credential.objects.create(portal=portal, webhook_user_id=user_id, webhook_code=code)
        webhook = f"{site}/sandbox/bench/rest/{user_id}/{code}/"
        agent, _token = agent_create(slug="bench-agent")
        grant_upsert(agent=agent, portal=portal, pack="core", read="auto")
        t0 = time.time()
        ids = seed_leads(sandbox, args.leads)
        print(f"seeded                 : {args.leads} leads in {time.time() - t0:.1f} s (straight into the tables)")

        log = open(data_dir / "export_bench.log", "w")  # noqa: SIM115
        if args.server == "runserver":
            server = [python, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
        else:
            server = [python, "-m", "gunicorn", "controlplane.wsgi:application", "--workers", "2", "--threads", "8",
                      "--worker-class", "gthread", "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
                      "--backlog", "2048", "--timeout", "120"]
        procs.append(subprocess.Popen(server, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        wait_http(f"{site}/healthz")
        celery_app.control.purge()
        procs.append(subprocess.Popen(
            [python, "-m", "celery", "-A", "controlplane", "worker", "--pool=prefork", "--concurrency=1",
             f"--loglevel={env['LOG_LEVEL']}", "--without-gossip", "--without-mingle", "--without-heartbeat",
             "-n", f"export-{db_name}@%h"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
        time.sleep(5)  # the worker is up before the clock starts

        def drain_buckets():
            if args.with_burst:
                sandbox_reset_limits(portal=sandbox)
                PortalLimiter.objects.filter(portal=portal).delete()
                return 0
            filled = fill_bucket(webhook, args.burst)
            PortalLimiter.objects.update_or_create(portal=portal, defaults={"level": float(args.burst),
                                                                            "updated_at": time.time()})
            return filled

        # 1. our export, end to end
        drain_buckets()
        before = sandbox_counters(portal=sandbox)
        started = time.time()
        export = export_submit(agent=agent, portal=portal, method="crm.lead.list", select=SELECT, filter_={},
                               order={}, fmt="jsonl").export
        deadline = started + max(600.0, args.leads / 100)
        while time.time() < deadline:
            export.refresh_from_db()
            if export.status in ("succeeded", "failed", "rejected", "cancelled", "expired"):
                break
            time.sleep(0.1)
        ended = time.time()
        after = sandbox_counters(portal=sandbox)
        if export.status != "succeeded":
            print(f"export                 : {export.status} {export.error}")
            return 1
        with open(files.export_path(export), encoding="utf-8") as handle:
            got = [int(json.loads(line)["ID"]) for line in handle]
        fetch = (export.finished_at - export.started_at).total_seconds()
        ours = args.leads / (ended - started)
        print(f"export rows            : {len(got)}/{args.leads}, in ID order and each once: {got == ids}")
        print(f"export end to end      : {ended - started:.1f} s = {ours:.0f} rows/s (submit, plan, worker, file)")
        print(f"export fetch window    : {fetch:.1f} s = {args.leads / fetch:.0f} rows/s "
              f"(plan done → file complete; rate shown to the agent {export.rows_written / export.active_seconds:.0f})")
        print(f"export requests        : {after['requests_total'] - before['requests_total']} "
              f"(the plan's call + {export.requests} batches), "
              f"QUERY_LIMIT_EXCEEDED {after['query_limit_refusals'] - before['query_limit_refusals']}")
        print(f"file                   : {export.file_bytes} bytes ({export.strategy})")
        Export.objects.all().delete()
        files.remove(files.export_path(export))

        if args.skip_fast_bitrix24:
            return 0

        # 2. fast_bitrix24's get_all, the same rows from the same sandbox
        import logging

        from fast_bitrix24 import BitrixAsync

        logging.getLogger("fast_bitrix24").setLevel(logging.WARNING)
        time.sleep(2)
        drain_buckets()
        before = sandbox_counters(portal=sandbox)

        async def run():
            b = BitrixAsync(webhook, verbose=False, ssl=False, request_pool_size=50 if args.with_burst else 1,
                            requests_per_second=args.rate)
            return await b.get_all("crm.lead.list", params={"select": SELECT})

        t1 = time.time()
        try:
            rows = asyncio.run(run())
        except Exception as exc:  # noqa: BLE001 - reported, not hidden
            print(f"fast_bitrix24          : FAILED after {time.time() - t1:.1f} s ({type(exc).__name__}: {exc})")
            return 0
        fb_span = time.time() - t1
        after = sandbox_counters(portal=sandbox)
        fb_ids = [int(r["ID"]) for r in rows]
        theirs = args.leads / fb_span
        print(f"fast_bitrix24 get_all  : {len(rows)} rows in {fb_span:.1f} s = {theirs:.0f} rows/s, "
              f"each once in order: {fb_ids == ids}, each once: {sorted(fb_ids) == ids}, "
              f"{after['requests_total'] - before['requests_total']} requests, "
              f"QUERY_LIMIT_EXCEEDED {after['query_limit_refusals'] - before['query_limit_refusals']}")
        print(f"ratio export (end to end) / fast_bitrix24: {ours / theirs:.2f}")
        return 0
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
