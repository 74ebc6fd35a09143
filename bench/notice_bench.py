#!/usr/bin/env python
"""What telling approvers on Bitrix24 costs a busy standard-limit portal (apps.approvals.notify),
and what it costs the agents reading from that portal meanwhile.

A throwaway PostgreSQL + Redis deployment (bench/asgi_harness.py): one uvicorn process serving the
plane and the sandbox portal `demo` (2 req/s drain, burst 50), one Celery worker (2 processes), the
demo seeded. Every approver of the portal (`--approvers`, 3, beside the demo's two) gets an email
address and a Bitrix24 user id there, so each waiting plan owes each of them an email and a
Bitrix24 notification. Then, over HTTP as the demo agent:

- `--plans` (100) writes are submitted, which wait for approval (as fast as one connection goes);
- two seconds later, `--reads` (5) auto reads `?wait=30`, a second apart, are timed: what an agent
  reading from the same portal sees while the approvers are being told;
- the bench waits until every plan was announced and every Bitrix24 notice sent or failed.

It prints the time to tell everyone, the portal's requests and QUERY_LIMIT_EXCEEDED answers, the
reads' latency and the worker's CPU. The same file runs against an older commit (a `git worktree`
with the bench files copied in): it reads only what both keep. It asserts nothing.

Usage: .venv/bin/python bench/notice_bench.py [--plans 100] [--approvers 3] [--reads 5] [--timeout 300]
"""

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from asgi_harness import Client, Deployment  # noqa: E402

WRITE = {"portal": "demo", "method": "crm.lead.add", "params": {"fields": {"TITLE": "waits"}}}


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (alive, or reaped: cutime/cstime)."""
    hz = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        pids += [int(child) for child in (task / "children").read_text().split()]
    total = 0.0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15]) / hz
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=100)
    parser.add_argument("--approvers", type=int, default=3)
    parser.add_argument("--reads", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()

    with Deployment("postgres") as d:
        d.django()
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Permission
        from django.db.models import Count

        from apps.approvals.models import ApproverBitrixUser, Notice
        from apps.plans.models import Plan
        from apps.portals.models import Portal
        from apps.sandbox.models import SandboxPortal
        from apps.sandbox.selectors import sandbox_counters

        portal = Portal.objects.get(slug="demo")
        sandbox = SandboxPortal.objects.get(slug="demo")
        rights = Permission.objects.filter(content_type__app_label="plans", codename__in=["approve_plan", "view_plan"])
        for n in range(1, args.approvers + 1):
            person = get_user_model().objects.create_user(f"bench-approver{n}", f"approver{n}@example.com", "x",
                                                          is_staff=True)
            person.user_permissions.add(*rights)
            portal.approvers.add(person)
        for n, person in enumerate(portal.approvers.all(), start=1):
            person.email = person.email or f"{person.username}@example.com"
            person.save(update_fields=["email"])
            ApproverBitrixUser.objects.create(user=person, portal=portal, bitrix_user_id=100 + n)
        people = portal.approvers.count()
        worker = d.procs[1].pid
        cpu_before = cpu_seconds(worker)
        before = sandbox_counters(portal=sandbox)
        print(f"{args.plans} waiting plans, {people} approvers with an email and a Bitrix24 user, "
              f"portal demo at 2 req/s burst 50; one uvicorn process, Celery worker 2 processes, PostgreSQL + Redis")

        marks: dict[str, float] = {}

        def watch():
            """Times the announcements and the notices from the first submit (its own connection)."""
            from django.db import connection

            while time.time() - start < args.timeout:
                if "announced" not in marks and marks.get("submitted") and not Plan.objects.filter(
                        status="pending_approval", approvers_told_at=None).exists():
                    marks["announced"] = time.time() - start
                if "announced" in marks and not Notice.objects.filter(
                        channel="bitrix", status__in=["queued", "sending"]).exists():
                    marks["told"] = time.time() - start
                    break
                time.sleep(0.1)
            connection.close()

        agent = Client(d.port, d.token)
        start = time.time()
        watcher = threading.Thread(target=watch)
        watcher.start()
        for _ in range(args.plans):
            status, plan = agent.request("POST", "/api/v1/plans", WRITE)
            assert status == 201 and plan["status"] == "pending_approval", (status, plan)
        submitted = marks["submitted"] = time.time() - start
        time.sleep(2.0)
        reads = []
        for _ in range(args.reads):
            t0 = time.time()
            status, plan = agent.submit_read(wait=30)
            reads.append((time.time() - t0, plan.get("status")))
            time.sleep(1.0)
        agent.close()
        watcher.join()
        announced_at, done_at = marks.get("announced"), marks.get("told")
        after = sandbox_counters(portal=sandbox)
        cpu = cpu_seconds(worker) - cpu_before
        statuses = dict(Notice.objects.filter(channel="bitrix").values_list("status").annotate(n=Count("pk")))

        def seconds(value):
            return f"{value:.1f} s" if value is not None else f"not within {args.timeout:.0f} s"

        times = [t * 1000 for t, _ in reads]
        print(f"submitted              : {args.plans} plans in {submitted:.1f} s")
        print(f"auto reads meanwhile   : p50 {statistics.median(times):.0f} ms, max {max(times):.0f} ms "
              f"(n={len(reads)}, from 2 s after the submits); statuses {sorted({s for _, s in reads})}")
        print(f"every plan announced   : {seconds(announced_at)} after the first submit")
        print(f"Bitrix24 notices       : {statuses}; all sent or failed {seconds(done_at)} after the first submit")
        used = after["requests_total"] - before["requests_total"]
        refused = after["query_limit_refusals"] - before["query_limit_refusals"]
        print(f"portal requests        : {used} (the reads' own included, if they ran), QUERY_LIMIT_EXCEEDED {refused}")
        print(f"worker CPU             : {cpu:.1f} s (both processes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
