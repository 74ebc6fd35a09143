#!/usr/bin/env python
"""What one long-poll cycle costs the web process (issue 11 point 5): `--waits` (500) agents hold
`GET /api/v1/plans/<id>?wait=30` on plans left pending, re-polling as each is answered at its
deadline (bench/longpoll_bench.py's waiters), against one uvicorn process on PostgreSQL + Redis
(bench/asgi_harness.py). Nothing else is sent. Over `--seconds` (60) it reads the process's CPU
time from /proc and counts the answers: CPU seconds per wall second, and milliseconds of CPU per
answered wait. Asserts nothing (bench/README.md keeps the figures).

Usage: .venv/bin/python bench/waitcycle_bench.py [--waits 500] [--seconds 60] [--cpus 0,1]
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from asgi_harness import Client, Deployment  # noqa: E402
from longpoll_bench import Waiters  # noqa: E402

HZ = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ  # utime + stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waits", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--cpus", default="0,1")
    args = parser.parse_args()
    with open("/proc/loadavg") as fh:
        print(f"load average at start: {' '.join(fh.read().split()[:3])}")
    with Deployment("postgres", extra_env={"API_RATE_PER_MINUTE": "1000000"}, cpus=args.cpus) as d:
        client, plan_ids = Client(d.port, d.token), []
        for i in range(100):
            status, plan = client.request("POST", "/api/v1/plans", {
                "portal": "demo", "method": "crm.lead.add", "params": {"fields": {"TITLE": f"held {i}"}}})
            assert status == 201 and plan["status"] == "pending_approval", (status, plan)
            plan_ids.append(plan["id"])
        client.close()
        waiters = Waiters(d.port, d.token, plan_ids, args.waits, ramp=10.0)
        waiters.run_in_thread()
        time.sleep(12)  # all arrived (over the 10 s ramp)
        cpu0, wall0, answered0 = cpu_seconds(d.server.pid), time.monotonic(), sum(waiters.answers.values())
        time.sleep(args.seconds)
        cpu1, wall1, answered1 = cpu_seconds(d.server.pid), time.monotonic(), sum(waiters.answers.values())
        waiters.stop = True
        answered, cpu = answered1 - answered0, cpu1 - cpu0
        print(f"{args.waits} waits held by one process: {cpu / (wall1 - wall0):.3f} CPU s per s; {answered} waits "
              f"answered in {wall1 - wall0:.0f} s; {cpu / max(1, answered) * 1000:.1f} ms of CPU per wait cycle; "
              f"answers {dict(waiters.answers)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
