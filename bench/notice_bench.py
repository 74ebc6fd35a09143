#!/usr/bin/env python
"""What telling approvers on Bitrix24 costs a busy standard-limit portal (apps.approvals.notify).

- creates a throwaway PostgreSQL database (BENCH_PG_URL's server, default
  postgres://postgres@127.0.0.1:5432) and migrates it;
- serves the sandbox portal with `manage.py runserver`: a standard-limit portal, 2 requests/s
  drain and a burst of 50; the plane reaches it with a webhook;
- `--approvers` (3) people approve on the portal, each with an email address and a Bitrix24 user
  id there (`ApproverBitrixUser`), so each waiting plan owes each of them an email and a
  Bitrix24 notification;
- submits `--plans` (100) write plans that wait for approval (`plans.services.plan_submit`, the
  API's own service) with the Redis broker (BENCH_BROKER_URL, default redis://127.0.0.1:6379/13,
  purged first) and no worker yet, then starts a real Celery worker (2 processes);
- measures, from the worker's start: when every plan was announced, when every Bitrix24 notice
  was sent (or failed), the portal's requests and QUERY_LIMIT_EXCEEDED answers, the tasks the
  worker ran, the time its processes spent in them (a task waiting for the portal's limiter holds
  its process) and their CPU time.

The same file runs against an older commit (a `git worktree` with this file copied in): it reads
only what both keep (plans, notices, the sandbox's counters). It asserts nothing.

Usage: .venv/bin/python bench/notice_bench.py [--plans 100] [--approvers 3] [--timeout 300] [--keep-db]
"""

import argparse
import base64
import os
import re
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

WRITE = [{"name": "call", "method": "crm.lead.add", "params": {"fields": {"TITLE": "waits"}}}]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (reaped or alive), from /proc."""
    hz = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    pids += [int(c) for c in children]
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / hz
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=100)
    parser.add_argument("--approvers", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args()

    import psycopg

    server_url = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
    parts = urlsplit(server_url)
    db_name = f"cp_bench_{secrets.token_hex(4)}"
    admin_dsn = f"{parts.scheme}://{parts.netloc}/postgres"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
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
            "FIELD_ENCRYPTION_KEYS", "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0wMDAwMDA="),
        "AUDIT_KEYS": os.environ.get("AUDIT_KEYS", "b1:" + base64.b64encode(secrets.token_bytes(32)).decode()),
        "ENV_FILE": "",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SANDBOX_ENABLED": "1",
        "PORTAL_ALLOW_LOOPBACK_HTTP": "1",
        "SANDBOX_BASE_URL": site,
        "SITE_URL": site,
        "DATABASE_URL": f"{parts.scheme}://{parts.netloc}/{db_name}",
        "CELERY_BROKER_URL": broker,
        "EMAIL_URL": "dummymail://",
        "DATA_DIR": str(data_dir),
        "LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "INFO"),
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
    }
    os.environ.update(env)
    python = sys.executable
    procs: list[subprocess.Popen] = []
    log_path = data_dir / "notice_bench.log"
    try:
        print(f"database {db_name}, broker {broker}, sandbox at {site}, {args.plans} waiting plans, "
              f"{args.approvers} approvers with a Bitrix24 user, portal 2 req/s burst 50")
        subprocess.run([python, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)

        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Permission
        from django.db.models import Count

        from apps.agents.services import agent_create
        from apps.approvals.models import ApproverBitrixUser, Notice
        from apps.plans.models import Plan
        from apps.plans.services import plan_submit
        from apps.policy.services import grant_upsert
        from apps.portals.models import Credential, Portal
        from apps.sandbox.selectors import sandbox_counters
        from apps.sandbox.services import sandbox_portal_ensure, sandbox_reset_limits, sandbox_webhook_create
        from controlplane.celery import app as celery_app

        sandbox = sandbox_portal_ensure(slug="bench", rate=2.0, burst=50)
        sandbox_reset_limits(portal=sandbox)
        user_id, code = sandbox_webhook_create(portal=sandbox)
        portal = Portal.objects.create(slug="bench", base_url=f"{site}/sandbox/bench", rate_per_second=2.0, burst=50)
        Credential.objects.create(portal=portal, webhook_user_id=user_id, webhook_code=code)
        agent, _token = agent_create(slug="bench-agent")
        grant_upsert(agent=agent, portal=portal, pack="core")  # writes wait for one approver
        rights = Permission.objects.filter(content_type__app_label="plans", codename__in=["approve_plan", "view_plan"])
        for n in range(1, args.approvers + 1):
            person = get_user_model().objects.create_user(f"approver{n}", f"approver{n}@example.com", "x",
                                                          is_staff=True)
            person.user_permissions.add(*rights)
            portal.approvers.add(person)
            ApproverBitrixUser.objects.create(user=person, portal=portal, bitrix_user_id=100 + n)

        log = open(log_path, "w")  # noqa: SIM115
        procs.append(subprocess.Popen(
            [python, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
            cwd=ROOT, env={**env, "CONN_MAX_AGE": "0"}, stdout=log, stderr=subprocess.STDOUT))
        wait_http(f"{site}/healthz")
        celery_app.control.purge()

        for _ in range(args.plans):
            plan_submit(agent=agent, portal=portal, steps=WRITE)
        before = sandbox_counters(portal=sandbox)
        worker = subprocess.Popen(
            [python, "-m", "celery", "-A", "controlplane", "worker", "--pool=prefork", "--concurrency=2",
             "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
             "-n", f"notice-{db_name}@%h"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append(worker)
        start = time.time()
        owed = args.plans * args.approvers
        announced_at = done_at = None
        cpu = 0.0
        while time.time() - start < args.timeout:
            if announced_at is None and not Plan.objects.filter(approvers_told_at=None).exists():
                announced_at = time.time() - start
            settled = Notice.objects.filter(channel="bitrix", status__in=["sent", "failed"]).count()
            cpu = max(cpu, cpu_seconds(worker.pid))
            if announced_at is not None and settled >= owed:
                done_at = time.time() - start
                break
            time.sleep(0.2)
        after = sandbox_counters(portal=sandbox)
        statuses = dict(Notice.objects.filter(channel="bitrix").values_list("status").annotate(n=Count("pk")))
        emails = dict(Notice.objects.filter(channel="email").values_list("status").annotate(n=Count("pk")))
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        log.flush()
        worker_log = log_path.read_text(errors="replace")
        tasks = re.findall(r"Task (\S+)\[[^\]]+\] (?:succeeded|retry)", worker_log)
        busy = sum(float(t) for t in re.findall(r"\] succeeded in ([0-9.]+)s", worker_log))
        by_task: dict[str, int] = {}
        for name in tasks:
            by_task[name.rsplit(".", 1)[-1]] = by_task.get(name.rsplit(".", 1)[-1], 0) + 1

        def seconds(value):
            return f"{value:.1f} s" if value is not None else f"not within {args.timeout:.0f} s"

        print(f"every plan announced   : {seconds(announced_at)} after the worker started")
        print(f"Bitrix24 notices       : {statuses} of {owed} owed; all sent or failed {seconds(done_at)}")
        print(f"email notices          : {emails}")
        print(f"portal requests        : {after['requests_total'] - before['requests_total']}, "
              f"QUERY_LIMIT_EXCEEDED {after['query_limit_refusals'] - before['query_limit_refusals']}")
        print(f"worker tasks run       : {sum(by_task.values())} {dict(sorted(by_task.items()))} "
              "(a retry counts once each time it ran)")
        print(f"worker time in tasks   : {busy:.1f} s (what the tasks that succeeded took, both processes: "
              "time neither could run anything else)")
        print(f"worker CPU             : {cpu:.1f} s (both processes)")
        return 0
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
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
