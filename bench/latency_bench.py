#!/usr/bin/env python
"""Latency of a waiting agent (issue 11 point 4), end to end over HTTP.

For each mode (`postgres`: PostgreSQL + Redis broker/cache/wake-ups; `embedded`: `make run`'s
default, SQLite + filesystem broker + unix-socket wake-ups), a throwaway deployment is seeded
with the demo and served by one uvicorn process with one real Celery worker (bench/asgi_harness.py):

1. auto read: `POST /api/v1/plans?wait=10` of `user.current` on the demo sandbox portal, one
   agent, one keep-alive connection, `--calls` times, paced at `--gap` seconds so the portal's
   budget (2 req/s drain, burst 50) is never used up: the time from sending the request to
   reading the `succeeded` answer.
2. approval: a write (`crm.lead.add`) is submitted (pending_approval), the agent long-polls
   `GET /api/v1/plans/<id>?wait=30`, then the bench approves it in-process through
   `plan_decide` (what the inbox and `decide_plan` call): the time from the approval's commit to
   the agent reading `succeeded` (the worker ran the call on the portal in between).

Prints p50/p95/max per mode; asserts nothing (bench/README.md keeps the figures).

Usage: .venv/bin/python bench/latency_bench.py [--mode both|postgres|embedded] [--calls 100]
       [--approvals 20] [--gap 0.6]
"""

import argparse
import datetime
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from asgi_harness import Client, Deployment, summary  # noqa: E402


def bench_reads(d: Deployment, calls: int, gap: float) -> None:
    client = Client(d.port, d.token)
    for _ in range(5):  # warm-up: imports, connections
        client.submit_read()
        time.sleep(gap)
    latencies, bad, phases, ids = [], [], [], []
    for _ in range(calls):
        started, wall = time.perf_counter(), time.time()
        status, plan = client.submit_read(wait=10)
        latencies.append(time.perf_counter() - started)
        if status != 201 or plan.get("status") != "succeeded":
            bad.append((status, plan.get("status") or plan.get("error")))
        else:
            created, finished = _epoch(plan["created_at"]), _epoch(plan["finished_at"])
            answered = wall + latencies[-1]
            phases.append((created - wall, finished - created, answered - finished))
            ids.append(plan["id"])
        time.sleep(gap)
    client.close()
    print(f"  auto read ?wait=10      : {summary(latencies)}; not succeeded: {len(bad)} {bad[:3]}")
    if phases:
        medians = [statistics.median(p[i] for p in phases) * 1000 for i in range(3)]
        print(f"    medians: request -> plan created {medians[0]:.1f} ms, created -> finished by the worker "
              f"{medians[1]:.1f} ms, finished -> answer read {medians[2]:.1f} ms")
        _worker_parts(d, ids)


def _worker_parts(d: Deployment, ids: list[str]) -> None:
    """The worker's part split by the plan's and its attempt's own timestamps (one attempt each)."""
    d.django()
    from apps.plans.models import ExecutionAttempt

    parts = [((a.started_at - a.plan.created_at).total_seconds(), (a.finished_at - a.started_at).total_seconds(),
              (a.plan.finished_at - a.finished_at).total_seconds())
             for a in ExecutionAttempt.objects.filter(plan_id__in=ids).select_related("plan")]
    if parts:
        medians = [statistics.median(p[i] for p in parts) * 1000 for i in range(3)]
        print(f"    worker medians: created -> attempt started {medians[0]:.1f} ms, the portal call "
              f"{medians[1]:.1f} ms, answered -> plan finished {medians[2]:.1f} ms (n={len(parts)})")


def _epoch(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def bench_approvals(d: Deployment, approvals: int, gap: float) -> None:
    d.django()
    from django.contrib.auth import get_user_model

    from apps.plans.services import plan_decide

    admin = get_user_model().objects.get(username="admin")
    submitter = Client(d.port, d.token)
    latencies, bad = [], []
    for i in range(approvals):
        status, plan = submitter.request("POST", "/api/v1/plans", {
            "portal": "demo", "method": "crm.lead.add", "params": {"fields": {"TITLE": f"bench {i}"}}})
        assert status == 201 and plan["status"] == "pending_approval", (status, plan)
        answer = {}

        def poll(plan_id=plan["id"], answer=answer):
            waiter = Client(d.port, d.token)
            answer["status"], answer["plan"] = waiter.request("GET", f"/api/v1/plans/{plan_id}?wait=30")
            answer["at"] = time.perf_counter()
            waiter.close()

        thread = threading.Thread(target=poll)
        thread.start()
        time.sleep(0.3)  # the long poll is parked on the server
        approved_at = time.perf_counter()
        plan_decide(plan_id=plan["id"], user=admin, decision="approve")  # commits, then enqueues
        thread.join()
        latencies.append(answer["at"] - approved_at)
        if answer["plan"].get("status") != "succeeded":
            bad.append(answer["plan"].get("status"))
        time.sleep(gap)
    submitter.close()
    print(f"  approval -> agent answer: {summary(latencies)}; not succeeded: {len(bad)} {bad[:3]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["both", "postgres", "embedded"], default="both")
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--approvals", type=int, default=20)
    parser.add_argument("--gap", type=float, default=0.6, help="seconds between calls (portal budget)")
    args = parser.parse_args()
    if args.mode == "both":  # Django is set up once per process (approvals): one child per mode
        import subprocess

        for mode in ("postgres", "embedded"):
            subprocess.run([sys.executable, __file__, "--mode", mode, "--calls", str(args.calls),
                            "--approvals", str(args.approvals), "--gap", str(args.gap)], check=True)
        return 0
    with open("/proc/loadavg") as fh:
        print(f"load average at start: {' '.join(fh.read().split()[:3])}")
    with Deployment(args.mode) as d:
        print(f"{args.mode}: uvicorn 1 process, Celery worker 2 processes, "
              f"{'PostgreSQL + Redis (broker, cache, wake-ups)' if d.db_name else 'SQLite + filesystem broker'}")
        bench_reads(d, args.calls, args.gap)
        bench_approvals(d, args.approvals, args.gap)
    with open("/proc/loadavg") as fh:
        print(f"load average at end: {' '.join(fh.read().split()[:3])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
