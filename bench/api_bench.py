#!/usr/bin/env python
"""Benchmark of the agent API's hot path: submit (`POST /api/v1/plans`) and poll
(`GET /api/v1/plans/<id>`), served by gunicorn with sync workers on PostgreSQL.

- creates a throwaway PostgreSQL database (BENCH_PG_URL's server, default
  postgres://postgres@127.0.0.1:5432), migrates it, and seeds one portal and one agent whose
  `core` grant needs one approver for writes: each submission is a *pending* write plan
  (`crm.lead.add`), the case issue 11 measured (its approvers' notification is queued on the
  broker, BENCH_BROKER_URL, default redis://127.0.0.1:6379/13; no worker runs);
- starts `gunicorn controlplane.wsgi` with W sync workers (default 2), persistent database
  connections (CONN_MAX_AGE=60, health checks on) and the per-agent API rate limit off
  (API_RATE_PER_MINUTE=0: it would refuse the 601st request of a minute);
- for submit, then for poll:
  1. an open-loop client in its own process sends R requests/s (default 100) for D seconds on a
     fixed schedule, whatever the answers' speed; latency is measured from each request's
     *scheduled* time, so a stalled server shows in the figures (no coordinated omission);
  2. `wrk` (Debian's, closed loop: C connections, 2 threads) for D seconds: the maximum
     sustained rate;
- prints p50/p90/p99/max latency, requests/s achieved, non-2xx answers, and the CPU time the
  gunicorn processes and the PostgreSQL backends serving them spent per request (from /proc):
  on a shared, loaded machine the wall-clock figures are distorted, the CPU figures much less.
It asserts nothing: the figures are for people (bench/README.md keeps the latest).

`--server uvicorn` serves the production command instead (`uvicorn controlplane.asgi --workers
W`, README "Configuration and production"), with the same database settings.

Usage: .venv/bin/python bench/api_bench.py [--rate 100] [--duration 20] [--workers 2]
       [--connections 8] [--server gunicorn|uvicorn] [--threads 1] [--keep-db]
"""

import argparse
import base64
import json
import multiprocessing
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from asgi_harness import fresh_redis  # noqa: E402
from limiter_bench import free_port, wait_http  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- the open-loop client (its own process) -----------------------------------------------------


def _one(host: str, port: int, method: str, path: str, body: bytes | None, headers: dict) -> int:
    import http.client

    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def open_loop(host, port, method, path, body, headers, rate, duration, out):
    """Send `rate` requests/s for `duration` s on a fixed schedule; put (latencies, statuses, span)."""
    count = int(rate * duration)
    latencies = [0.0] * count
    statuses = [0] * count
    pool = ThreadPoolExecutor(max_workers=64)
    start = time.perf_counter() + 0.2
    done = threading.Semaphore(0)

    def run(i, due):
        try:
            statuses[i] = _one(host, port, method, path.replace("{i}", str(i)),
                               body.replace(b"{i}", str(i).encode()) if body else None, headers)
        except OSError:
            statuses[i] = -1
        latencies[i] = time.perf_counter() - due
        done.release()

    for i in range(count):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        pool.submit(run, i, due)
    for _ in range(count):
        done.acquire()
    span = time.perf_counter() - start
    pool.shutdown()
    out.put((latencies, statuses, span))


def open_loop_process(*args) -> tuple[list[float], list[int], float]:
    queue = multiprocessing.Queue()
    proc = multiprocessing.Process(target=open_loop, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


# --- measuring -----------------------------------------------------------------------------------


def cpu_seconds(pids) -> dict[int, float]:
    """CPU seconds (user + system) so far of each process still alive."""
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
    return out


def cpu_spent(before: dict[int, float], after: dict[int, float]) -> float:
    """What the processes spent in between; one that started in between counts whole (a backend
    opened during the phase), one that ended in between is lost (an undercount)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def gunicorn_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children")
    kids = [int(p) for p in children.read_text().split()] if children.exists() else []
    return [master, *kids]


def backend_pids(database_url: str, db_name: str) -> list[int]:
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                            (db_name,)).fetchall()
    return [row[0] for row in rows]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def wrk(url: str, method: str, body: str | None, token: str, connections: int, duration: int) -> dict:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    lua = [f'wrk.method = "{method}"', f'wrk.headers["Authorization"] = "Bearer {token}"']
    if body is not None:
        lua += ['wrk.headers["Content-Type"] = "application/json"', f"wrk.body = {json.dumps(body)}"]
    script.write_text("\n".join(lua) + "\n")
    try:
        done = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
                              capture_output=True, text=True, check=True)
    finally:
        script.unlink()
    text = done.stdout
    found = {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
        "requests": int(re.search(r"(\d+) requests in", text).group(1)),
        "non2xx": int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", text)) else 0,
        "errors": (m.group(0) if (m := re.search(r"Socket errors:.*", text)) else ""),
    }
    for q in ("50", "99"):
        m = re.search(rf"\s{q}%\s+([\d.]+)(us|ms|s)\b", text)
        if m:
            scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
            found[f"p{q}"] = float(m.group(1)) * scale
    return found


def phase(name, *, site, port, method, path, body, token, args, pids):
    headers = {"Authorization": f"Bearer {token}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    cpu_app, cpu_db = cpu_seconds(pids()[0]), cpu_seconds(pids()[1])
    latencies, statuses, span = open_loop_process("127.0.0.1", port, method, path,
                                                  body.encode() if body else None, headers, args.rate, args.duration)
    app_cpu = cpu_spent(cpu_app, cpu_seconds(pids()[0]))
    db_cpu = cpu_spent(cpu_db, cpu_seconds(pids()[1]))
    ok = [lat for lat, status in zip(latencies, statuses, strict=True) if 200 <= status < 300]
    bad = len(statuses) - len(ok)
    n = len(statuses)
    print(f"{name} open loop at {args.rate:g}/s for {args.duration} s: {n} requests, {bad} not 2xx, "
          f"achieved {n / span:.1f}/s")
    print(f"    latency from schedule: p50 {1000 * pct(ok, 0.5):.1f} ms, p90 {1000 * pct(ok, 0.9):.1f} ms, "
          f"p99 {1000 * pct(ok, 0.99):.1f} ms, max {1000 * max(ok, default=float('nan')):.1f} ms, "
          f"mean {1000 * statistics.fmean(ok) if ok else float('nan'):.1f} ms")
    print(f"    CPU per request: web server {1000 * app_cpu / n:.2f} ms, "
          f"PostgreSQL backends {1000 * db_cpu / n:.2f} ms")
    cpu_app, cpu_db = cpu_seconds(pids()[0]), cpu_seconds(pids()[1])
    found = wrk(site + path.replace("{i}", "0"), method, body.replace("{i}", "w") if body else None, token,
                args.connections, args.duration)
    app_cpu = cpu_spent(cpu_app, cpu_seconds(pids()[0]))
    db_cpu = cpu_spent(cpu_db, cpu_seconds(pids()[1]))
    print(f"{name} closed loop (wrk, {args.connections} connections, {args.duration} s): "
          f"{found['rps']:.1f}/s sustained, {found['requests']} requests, {found['non2xx']} not 2xx"
          f"{', ' + found['errors'] if found['errors'] else ''}; "
          f"p50 {found.get('p50', float('nan')):.1f} ms, p99 {found.get('p99', float('nan')):.1f} ms")
    print(f"    CPU per request: web server {1000 * app_cpu / found['requests']:.2f} ms, "
          f"PostgreSQL backends {1000 * db_cpu / found['requests']:.2f} ms; "
          f"CPU-bound ceiling on 2 cores ~{2 / ((app_cpu + db_cpu) / found['requests']):.0f}/s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--duration", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--server", choices=("gunicorn", "uvicorn"), default="gunicorn")
    parser.add_argument("--threads", type=int, default=1,
                        help="gunicorn threads per worker: more than 1 uses gthread workers (keep-alive)")
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")

    import psycopg

    server_url = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
    parts = urlsplit(server_url)
    db_name = f"cp_apibench_{secrets.token_hex(4)}"
    admin_dsn = f"{parts.scheme}://{parts.netloc}/postgres"
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db_name}"')
    database_url = f"{parts.scheme}://{parts.netloc}/{db_name}"
    port = free_port()
    site = f"http://127.0.0.1:{port}"
    data_dir = ROOT / "var" / "bench"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DEBUG": "0",
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-secret-key-" + secrets.token_hex(8)),
        "FIELD_ENCRYPTION_KEYS": os.environ.get("FIELD_ENCRYPTION_KEYS",
                                                "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0wMDAwMDA="),
        "AUDIT_KEYS": os.environ.get("AUDIT_KEYS", "b1:" + base64.b64encode(secrets.token_bytes(32)).decode()),
        "ENV_FILE": "",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": database_url,
        "CONN_MAX_AGE": "60",
        "CONN_HEALTH_CHECKS": "1",
        "API_RATE_PER_MINUTE": "0",
        "CELERY_BROKER_URL": os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/13"),
        "DATA_DIR": str(data_dir),
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
    }
    os.environ.update(env)
    fresh_redis(env["CELERY_BROKER_URL"])  # no worker runs: earlier runs' tasks would pile up there
    python = sys.executable
    server = None
    try:
        kind = f"gthread workers x {args.threads} threads" if args.threads > 1 else "sync workers"
        served = (f"gunicorn {args.workers} {kind}" if args.server == "gunicorn"
                  else f"uvicorn {args.workers} workers (controlplane.asgi)")
        print(f"database {db_name}, {served} at {site}, "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        subprocess.run([python, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)

        import django

        django.setup()
        from apps.agents.services import agent_create
        from apps.policy.services import grant_upsert
        from apps.portals.services import portal_upsert

        portal, _ = portal_upsert(slug="bench", base_url="https://bench.bitrix24.com", auth_mode="webhook",
                                  secrets={"webhook_code": "bench-hook-code-0123"}, fields={"webhook_user_id": "1"})
        agent, token = agent_create(slug="bench-agent")
        grant_upsert(agent=agent, portal=portal, pack="core", write="approve")

        log = open(data_dir / "api_bench.log", "w")  # noqa: SIM115
        if args.server == "gunicorn":
            command = [str(Path(python).parent / "gunicorn"), "controlplane.wsgi", "-w", str(args.workers),
                       *(["-k", "gthread", "--threads", str(args.threads)] if args.threads > 1 else ["-k", "sync"]),
                       "-b", f"127.0.0.1:{port}", "--backlog", "2048", "--log-level", "warning"]
        else:
            command = [str(Path(python).parent / "uvicorn"), "controlplane.asgi:application", "--host", "127.0.0.1",
                       "--port", str(port), "--workers", str(args.workers), "--lifespan", "off", "--backlog", "2048",
                       "--log-level", "warning", "--no-access-log"]
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        wait_http(f"{site}/healthz")
        # warm every worker (imports, the database connection) before measuring
        body = json.dumps({"portal": "bench", "method": "crm.lead.add",
                           "params": {"fields": {"TITLE": "lead {i}"}}})
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        for i in range(40):
            status = _one("127.0.0.1", port, "POST", "/api/v1/plans", body.replace("{i}", f"warm{i}").encode(), headers)
            if status != 201:
                raise SystemExit(f"a warm-up submission answered {status}")
        poll_id = json.loads(_post(port, body.replace("{i}", "poll"), headers))["id"]

        def pids():
            return gunicorn_pids(server.pid), backend_pids(database_url, db_name)

        phase("submit", site=site, port=port, method="POST", path="/api/v1/plans", body=body, token=token,
              args=args, pids=pids)
        phase("poll  ", site=site, port=port, method="GET", path=f"/api/v1/plans/{poll_id}", body=None,
              token=token, args=args, pids=pids)
        from apps.plans.models import Plan

        print(f"plans stored: {Plan.objects.count()}; load average after: {os.getloadavg()[0]:.1f}")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        from django.db import connections

        connections.close_all()
        if not args.keep_db:
            with psycopg.connect(admin_dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    return 0


def _post(port: int, body: str, headers: dict) -> bytes:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/api/v1/plans", body=body.encode(), headers=headers)
        return conn.getresponse().read()
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
