"""What bench/latency_bench.py and bench/longpoll_bench.py share: a throwaway deployment of the
plane (PostgreSQL + Redis, or the embedded default: SQLite + filesystem broker), seeded with the
demo, served by one uvicorn process (`controlplane.asgi`) with one real Celery worker beside it."""

import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summary(values_s: list[float]) -> str:
    ms = [v * 1000 for v in values_s]
    return (f"p50 {percentile(ms, .5):.1f} ms, p95 {percentile(ms, .95):.1f} ms, max {max(ms):.1f} ms "
            f"(n={len(ms)})")


def fresh_redis(url: str) -> None:
    """Empty a bench's own Redis database: an earlier run's queued and unacknowledged tasks (a
    retry's countdown is held unacknowledged, and restored to the queue by the next worker) would
    otherwise run in this one, in front of what it measures."""
    if url.startswith("redis://"):
        import redis

        with redis.Redis.from_url(url) as client:
            client.flushdb()


class Deployment:
    """`with Deployment("postgres") as d:` ... d.port, d.token, d.env; processes stopped and the
    throwaway database dropped on exit."""

    def __init__(self, mode: str, *, extra_env: dict | None = None, worker_concurrency: int = 2,
                 cpus: str | None = None, web_workers: int = 1):
        """`web_workers`: uvicorn's `--workers` (1: one process serves everything; the README's
        production command runs 2)."""
        self.mode, self.extra_env, self.concurrency, self.cpus = mode, extra_env or {}, worker_concurrency, cpus
        self.web_workers = web_workers
        self.procs: list[subprocess.Popen] = []
        self.db_name = None
        self.data_dir = Path(tempfile.mkdtemp(prefix=f"cp-bench-{mode}-"))
        self.port = free_port()

    def __enter__(self):
        base = f"http://127.0.0.1:{self.port}"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
            "ENV_FILE": "", "DJANGO_SETTINGS_MODULE": "controlplane.settings", "PYTHONPATH": str(ROOT),
            "DATA_DIR": str(self.data_dir), "SANDBOX_BASE_URL": base, "SITE_URL": base,
            "LOG_LEVEL": "WARNING", "SANDBOX_ENABLED": "1", "PORTAL_ALLOW_LOOPBACK_HTTP": "1",
            "ALLOWED_HOSTS": "127.0.0.1,localhost", "APPROVER_MFA_REQUIRED": "0",
        }
        if self.mode == "embedded":
            env["DEBUG"] = "1"  # exactly `make run`'s configuration
        else:
            import psycopg

            server = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
            parts = urlsplit(server)
            self.db_name = f"cp_latency_bench_{secrets.token_hex(4)}"
            self.admin_dsn = f"{parts.scheme}://{parts.netloc}/postgres"
            with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.db_name}"')
            env.update({
                "DEBUG": "0", "SECRET_KEY": "bench-" + secrets.token_hex(16),
                "FIELD_ENCRYPTION_KEYS": "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0wMDAwMDA=",
                "AUDIT_KEYS": "b1:YXVkaXQta2V5LWZvci10ZXN0cy1vbmx5LTAwMDAwMDA=",
                "SESSION_COOKIE_SECURE": "0", "CSRF_COOKIE_SECURE": "0",
                "DATABASE_URL": f"{parts.scheme}://{parts.netloc}/{self.db_name}",
                "CELERY_BROKER_URL": os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/8"),
                "CACHE_URL": os.environ.get("BENCH_CACHE_URL", "redis://127.0.0.1:6379/9"),
            })
        env.update(self.extra_env)
        self.env = env
        for url in (env.get("CELERY_BROKER_URL", ""), env.get("CACHE_URL", "")):
            fresh_redis(url)
        py = str(VENV_BIN / "python")
        for args in (["migrate", "--noinput", "-v", "0"], ["seed_demo"]):
            subprocess.run([py, "manage.py", *args], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        self.token = json.loads((self.data_dir / "demo-credentials.json").read_text())["agent_token"]
        pin = ["taskset", "-c", self.cpus] if self.cpus and shutil.which("taskset") else []
        self.server = self._start(pin + [str(VENV_BIN / "uvicorn"), "controlplane.asgi:application", "--host",
                                         "127.0.0.1", "--port", str(self.port), "--lifespan", "off",
                                         "--no-access-log", "--log-level", "warning", "--backlog", "4096",
                                         *(["--workers", str(self.web_workers)] if self.web_workers > 1 else [])])
        self._start([str(VENV_BIN / "celery"), "-A", "controlplane", "worker", "--loglevel=WARNING",
                     f"--concurrency={self.concurrency}", "--without-gossip", "--without-mingle"])
        self._wait_http()
        self._wait_worker()
        return self

    def _start(self, argv) -> subprocess.Popen:
        proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL,
                                stderr=open(self.data_dir / f"{Path(argv[0]).name}-{len(self.procs)}.log", "w"),
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def _wait_http(self, timeout: float = 60.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                conn.getresponse().read()
                return
            except OSError:
                time.sleep(0.2)
        raise SystemExit(f"server on port {self.port} did not come up")

    def _wait_worker(self, timeout: float = 90.0) -> None:
        """Until an auto read plan succeeds (the worker consumes and the sandbox answers)."""
        deadline = time.time() + timeout
        client = Client(self.port, self.token)
        while time.time() < deadline:
            status, plan = client.submit_read(wait=5)
            if plan.get("status") == "succeeded":
                client.close()
                return
        raise SystemExit("the worker did not execute a plan")

    def django(self):
        """Django set up in this process against the same database (for approvals)."""
        os.environ.update(self.env)
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()

    def server_pids(self) -> list[int]:
        """The processes that serve requests: the one uvicorn process, or its workers."""
        if self.web_workers <= 1:
            return [self.server.pid]
        children = []
        for task in Path(f"/proc/{self.server.pid}/task").iterdir():
            children += [int(pid) for pid in (task / "children").read_text().split()]
        return children

    def threads_of_server(self) -> int:
        return sum(_status_field(pid, "Threads") for pid in self.server_pids())

    def rss_mib_of_server(self) -> float:
        return sum(_status_field(pid, "VmRSS") for pid in self.server_pids()) / 1024

    def __exit__(self, *exc):
        for proc in reversed(self.procs):
            try:
                os.killpg(proc.pid, signal.SIGTERM)  # each started in a session of its own
            except ProcessLookupError:
                continue
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        if self.db_name:
            import psycopg

            with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _status_field(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return -1


class Client:
    """One agent's keep-alive HTTP connection."""

    def __init__(self, port: int, token: str):
        self.port, self.token = port, token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        headers = {"Authorization": f"Bearer {self.token}"}
        raw = None
        if body is not None:
            raw = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, raw, headers)
                response = self.conn.getresponse()
                return response.status, json.loads(response.read() or b"{}")
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.conn.close()  # the server closed an idle keep-alive connection: reconnect once
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def submit_read(self, wait: int = 10) -> tuple[int, dict]:
        return self.request("POST", f"/api/v1/plans?wait={wait}",
                            {"portal": "demo", "method": "user.current", "params": {}})

    def close(self):
        self.conn.close()
