"""Serve the app on a free local port with a seeded agent token and run schemathesis against the
served OpenAPI document with every check (`make schemathesis`, called by .ci/run).

The server (uvicorn with controlplane.asgi, as production) runs with DEBUG off on a fresh SQLite
database in a temporary directory, or on SCHEMATHESIS_DATABASE_URL when that is set (a PostgreSQL
database the run may fill). The run is bounded (`--max-examples` per operation,
SCHEMATHESIS_MAX_EXAMPLES, default 50) and stops by itself; the exit status is schemathesis's
(0: no failure).
"""

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(data_dir: str) -> dict:
    env = {
        key: value for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "CACHE_URL", "CELERY_BROKER_URL"}
    }
    env.update({
        "DJANGO_SETTINGS_MODULE": "tests.contract.fuzz_settings",
        "DEBUG": "0",
        "SECRET_KEY": "schemathesis-run-secret-key-not-for-production",
        "FIELD_ENCRYPTION_KEYS": "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0wMDAwMDA=",
        "AUDIT_KEYS": "k1:c2NoZW1hdGhlc2lzLWF1ZGl0LWtleS0wMDAwMDAwMDA=",
        "ENV_FILE": "",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATA_DIR": data_dir,
        "CELERY_BROKER_URL": "memory://",
        "SANDBOX_ENABLED": "0",
        "SECURE_SSL_REDIRECT": "0",
        "API_RATE_PER_MINUTE": "1000000",
        "PYTHONPATH": str(ROOT),
    })
    if os.environ.get("SCHEMATHESIS_DATABASE_URL"):
        env["DATABASE_URL"] = os.environ["SCHEMATHESIS_DATABASE_URL"]
    return env


SEED = """
import uuid
import django
django.setup()
from apps.agents.services import agent_create
from apps.policy.services import grant_upsert
from apps.portals.services import portal_upsert

portal, _ = portal_upsert(slug="acme", base_url="https://acme.bitrix24.com", auth_mode="webhook",
                          secrets={"webhook_code": "fuzz-hook-code-0123456789"}, fields={"webhook_user_id": "1"})
agent, token = agent_create(slug="fuzz-" + uuid.uuid4().hex[:8])
for pack in ("core", "comms", "diagnostics"):
    grant_upsert(agent=agent, portal=portal, pack=pack)
print(token)
"""


def main() -> int:
    max_examples = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "50")
    with tempfile.TemporaryDirectory(prefix="cp-schemathesis-") as data_dir:
        env = server_env(data_dir)
        subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
        token = subprocess.run([PY, "-c", SEED], cwd=ROOT, env=env, check=True, capture_output=True,
                               text=True).stdout.strip().splitlines()[-1]
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = open(Path(data_dir) / "server.log", "w")  # noqa: SIM115 - closed below
        # the production server and application (uvicorn, controlplane.asgi), as `make run` serves it
        server = subprocess.Popen([str(Path(PY).with_name("uvicorn")), "controlplane.asgi:application", "--host",
                                   "127.0.0.1", "--port", str(port), "--lifespan", "off", "--log-level", "warning"],
                                  cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            for _ in range(100):
                try:
                    urllib.request.urlopen(f"{base}/healthz", timeout=1).close()  # noqa: S310 - local
                    break
                except OSError:
                    if server.poll() is not None:
                        raise SystemExit("the server did not start") from None
                    time.sleep(0.2)
            command = [
                str(Path(PY).with_name("schemathesis")), "run", f"{base}/api/v1/openapi.json",
                "--checks", "all", "--header", f"Authorization: Bearer {token}",
                "--max-examples", max_examples, "--seed", os.environ.get("SCHEMATHESIS_SEED", "20261124"),
                "--workers", "1", "--request-timeout", "10", "--max-redirects", "0",
                "--generation-database", "none", "--no-color", *sys.argv[1:],
            ]
            result = subprocess.run(command, cwd=data_dir, env={
                **os.environ, "SCHEMATHESIS_TELEMETRY": "false", "PYTHONPATH": str(ROOT),
                "SCHEMATHESIS_HOOKS": "tests.contract.schemathesis_hooks"})
            return result.returncode
        finally:
            server.terminate()
            server.wait(timeout=10)
            log.close()
            if os.environ.get("SCHEMATHESIS_SERVER_LOG"):
                print((Path(data_dir) / "server.log").read_text()[-20000:], file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
