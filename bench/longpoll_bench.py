#!/usr/bin/env python
"""Long polls do not hold workers (issue 11 point 5): `--waits` (500) concurrent
`GET /api/v1/plans/<id>?wait=30` held by ONE uvicorn process while another client's auto read
submits (`POST /api/v1/plans?wait=10`) are timed.

The waiters arrive spread over `--ramp` seconds (10; 0 sends all 500 at once, the worst case:
their deadlines then coincide and all 500 re-poll in the same instant).

A throwaway PostgreSQL + Redis deployment (bench/asgi_harness.py): one uvicorn process (pinned to
`--cpus`, default the machine's two cores 0,1) serving `controlplane.asgi`, one Celery worker
(2 processes) beside it, the demo seeded. `--plans` writes are submitted and left pending
approval; `--waits` waiters (asyncio, one keep-alive connection each, in this process) long-poll
them, each re-polling as soon as its answer comes (at the 30 s deadline), as an agent's loop does,
so all of them stay held while the submits are measured. The per-agent rate limit is raised for
the run (`API_RATE_PER_MINUTE`): every waiter uses the demo agent's token.

`--calls` (80, about 50 s: longer than one 30 s cycle of the waiters, so their deadline re-polls
fall inside it) auto reads are timed, and beside them pending write submits without a wait at
`--write-rate` per second (10), timed from their scheduled start (point 3's submit latency): an
open loop over 8 connections.

Prints the submit latency alone and with the waiters held, how many waits were outstanding,
the server process's threads and RSS while they were held, and the waiters' answers by status.
Asserts nothing (bench/README.md keeps the figures).

`--web-workers 2` serves with the README's production command (two uvicorn processes) instead of
one; the waits are then shared by the two.

Usage: .venv/bin/python bench/longpoll_bench.py [--waits 500] [--plans 100] [--calls 80] [--gap 0.6]
       [--cpus 0,1] [--ramp 10] [--write-rate 10] [--web-workers 1]
"""

import argparse
import asyncio
import json
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from asgi_harness import Client, Deployment, summary  # noqa: E402


class Waiters:
    def __init__(self, port: int, token: str, plan_ids: list[str], count: int, ramp: float):
        self.port, self.token, self.plan_ids, self.count, self.ramp = port, token, plan_ids, count, ramp
        self.outstanding = 0
        self.answers: Counter = Counter()
        self.stop = False

    async def one(self, i: int) -> None:
        path = f"/api/v1/plans/{self.plan_ids[i % len(self.plan_ids)]}?wait=30"
        request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {self.token}\r\n\r\n").encode()
        reader = writer = None
        await asyncio.sleep(self.ramp * i / self.count)  # arrivals spread over --ramp seconds
        while not self.stop:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(request)
                await writer.drain()
                self.outstanding += 1
                try:
                    status_line = await reader.readline()
                    length = 0
                    while (line := await reader.readline()) not in (b"\r\n", b""):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":")[1])
                    body = await reader.readexactly(length)
                finally:
                    self.outstanding -= 1
                status = int(status_line.split()[1])
                self.answers[(status, json.loads(body).get("status", "error") if status == 200 else "-")] += 1
            except (OSError, asyncio.IncompleteReadError, IndexError, ValueError) as exc:
                self.answers[("connection error", type(exc).__name__)] += 1
                if writer is not None:
                    writer.close()
                reader = writer = None
                await asyncio.sleep(0.5)
        if writer is not None:
            writer.close()

    def run_in_thread(self) -> threading.Thread:
        def main():
            async def all_of_them():
                await asyncio.gather(*(self.one(i) for i in range(self.count)))
            asyncio.run(all_of_them())
        thread = threading.Thread(target=main, daemon=True)
        thread.start()
        return thread


def timed_submits(d: Deployment, calls: int, gap: float, slow: list | None = None) -> tuple[list[float], list]:
    client = Client(d.port, d.token)
    latencies, bad = [], []
    for _ in range(calls):
        started, wall = time.perf_counter(), time.time()
        status, plan = client.submit_read(wait=10)
        latencies.append(time.perf_counter() - started)
        if status != 201 or plan.get("status") != "succeeded":
            bad.append((status, plan.get("status") or plan.get("error", {}).get("code")))
        elif slow is not None:
            slow.append((latencies[-1], wall, plan["id"]))
        time.sleep(gap)
    client.close()
    return latencies, bad


def slowest_split(d: Deployment, slow: list, count: int = 3) -> None:
    """Where the slowest reads' time went, by the plan's and its attempt's own timestamps."""
    d.django()
    from apps.plans.models import ExecutionAttempt

    for latency, wall, plan_id in sorted(slow, reverse=True)[:count]:
        a = ExecutionAttempt.objects.select_related("plan").filter(plan_id=plan_id).first()
        if a is None:
            continue
        p = a.plan
        created = p.created_at.timestamp()
        print(f"    slow read {latency * 1000:.0f} ms: request -> created {(created - wall) * 1000:.0f} ms, "
              f"-> attempt started {(a.started_at.timestamp() - created) * 1000:.0f} ms, portal call "
              f"{(a.finished_at - a.started_at).total_seconds() * 1000:.0f} ms, -> finished "
              f"{(p.finished_at - a.finished_at).total_seconds() * 1000:.0f} ms, -> answer read "
              f"{(wall + latency - p.finished_at.timestamp()) * 1000:.0f} ms")


def timed_writes(d: Deployment, rate: float, stop: threading.Event, out: list, connections: int = 8) -> None:
    """Pending write submits (no wait) at `rate` per second on a fixed schedule, timed from each
    one's scheduled start, until `stop`: point 3's submit latency, taken while the waits are held.
    An open loop, as independent agents are: `connections` keep-alive connections take the
    schedule's slots in turn, so one slow answer does not hold back the submits due after it
    (with one connection, every submit behind a slow one was counted late by the client's own
    queue); a submit that finds its connection still busy starts late and is counted from its slot."""
    start = time.perf_counter() + 0.1

    def one(k: int) -> None:
        client, slot = Client(d.port, d.token), k
        while not stop.is_set():
            due = start + slot / rate
            time.sleep(max(0.0, due - time.perf_counter()))
            status, plan = client.request("POST", "/api/v1/plans", {
                "portal": "demo", "method": "crm.lead.add", "params": {"fields": {"TITLE": f"timed {slot}"}}})
            out.append((time.perf_counter() - due, status == 201 and plan.get("status") == "pending_approval"))
            slot += connections
        client.close()

    threads = [threading.Thread(target=one, args=(k,), daemon=True) for k in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waits", type=int, default=500)
    parser.add_argument("--plans", type=int, default=100)
    parser.add_argument("--calls", type=int, default=80)
    parser.add_argument("--gap", type=float, default=0.6)
    parser.add_argument("--cpus", default="0,1")
    parser.add_argument("--web-workers", type=int, default=1,
                        help="uvicorn processes (1: all the waits held by one; the README's production command runs 2)")
    parser.add_argument("--write-rate", type=float, default=10.0,
                        help="pending write submits per second (no wait) timed beside the reads; 0: none")
    parser.add_argument("--ramp", type=float, default=10.0,
                        help="seconds over which the waiters arrive (0: all at once; their 30 s deadlines then "
                             "coincide and all re-poll together)")
    args = parser.parse_args()
    with open("/proc/loadavg") as fh:
        print(f"load average at start: {' '.join(fh.read().split()[:3])}")
    with Deployment("postgres", extra_env={"API_RATE_PER_MINUTE": "1000000"}, cpus=args.cpus,
                    web_workers=args.web_workers) as d:
        print(f"uvicorn: {args.web_workers} process(es) (pids {d.server_pids()}) on cpus {args.cpus}; "
              f"Celery worker 2 processes; PostgreSQL + Redis")
        submitter = Client(d.port, d.token)
        plan_ids = []
        for i in range(args.plans):
            status, plan = submitter.request("POST", "/api/v1/plans", {
                "portal": "demo", "method": "crm.lead.add", "params": {"fields": {"TITLE": f"held {i}"}}})
            assert status == 201 and plan["status"] == "pending_approval", (status, plan)
            plan_ids.append(plan["id"])
        submitter.close()
        idle_threads, idle_rss = d.threads_of_server(), d.rss_mib_of_server()
        alone, bad_alone = timed_submits(d, max(10, args.calls // 2), args.gap)
        print(f"submits, no waiters      : {summary(alone)}; not succeeded {len(bad_alone)}")
        print(f"server idle              : {idle_threads} threads, RSS {idle_rss:.0f} MiB")

        waiters = Waiters(d.port, d.token, plan_ids, args.waits, args.ramp)
        thread = waiters.run_in_thread()
        deadline = time.time() + 60
        while waiters.outstanding < args.waits and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(2.0)  # let the server finish taking them in
        held_threads, held_rss = d.threads_of_server(), d.rss_mib_of_server()
        held_at_start = waiters.outstanding
        samples = []
        sampler_stop = threading.Event()

        def sample():
            while not sampler_stop.is_set():
                samples.append((waiters.outstanding, d.threads_of_server()))
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        writes: list = []
        writer = threading.Thread(target=timed_writes, args=(d, args.write_rate, sampler_stop, writes), daemon=True)
        if args.write_rate > 0:
            writer.start()
        slow: list = []
        loaded, bad_loaded = timed_submits(d, args.calls, args.gap, slow)
        sampler_stop.set()
        sampler.join()
        if args.write_rate > 0:
            writer.join()
        print(f"waits outstanding        : {held_at_start} when the submits started; during them min "
              f"{min(s[0] for s in samples)}, max {max(s[0] for s in samples)}")
        threads = sorted(s[1] for s in samples)
        print(f"server with waits held   : {held_threads} threads when the submits started; while submitting "
              f"min {threads[0]}, median {threads[len(threads) // 2]}, max {threads[-1]}; RSS {held_rss:.0f} MiB")
        print(f"submits, {args.waits} waits held: {summary(loaded)}; not succeeded {len(bad_loaded)} "
              f"{bad_loaded[:3]}")
        if writes:
            lat = sorted(w[0] for w in writes)
            print(f"pending writes, no wait, {args.write_rate:g}/s beside them: "
                  f"p50 {lat[len(lat) // 2] * 1000:.1f} ms, "
                  f"p99 {lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000:.1f} ms, max {lat[-1] * 1000:.1f} ms "
                  f"(n={len(lat)}); not pending_approval {sum(not w[1] for w in writes)}")
        slowest_split(d, slow)
        waiters.stop = True
        thread.join(timeout=40)
        print(f"waiters' answers         : {dict(waiters.answers)}")
    with open("/proc/loadavg") as fh:
        print(f"load average at end: {' '.join(fh.read().split()[:3])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
