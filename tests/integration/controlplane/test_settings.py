"""Settings as an operator meets them: the `.env` that `make run` writes serves every command
from a fresh shell, and the production values of `.env.example` pass `check --deploy`."""

import os
import stat
import subprocess
import sys
from pathlib import Path

from controlplane import envfile

ROOT = Path(__file__).resolve().parents[3]


def clean_env(**extra) -> dict[str, str]:
    """A shell with nothing of ours set: only PATH and HOME, and what the test adds."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"), **extra}


def manage(*args, env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_envfile_is_written_once_with_owner_only_mode(tmp_path):
    path = tmp_path / ".env"
    assert envfile.main(["envfile", str(path)]) == 0
    first = path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    values = dict(line.split("=", 1) for line in first.splitlines() if line and not line.startswith("#"))
    assert values["DEBUG"] == "1"
    assert len(values["SECRET_KEY"]) >= 50
    assert values["FIELD_ENCRYPTION_KEYS"] and values["AUDIT_KEYS"].startswith("k1:")
    assert envfile.main(["envfile", str(path)]) == 0
    assert path.read_text() == first, "a second run must keep the keys that encrypted the data"


def test_envfile_keeps_the_legacy_debug_key_for_an_existing_database(tmp_path):
    (tmp_path / "controlplane.sqlite3").write_bytes(b"")
    values = envfile.embedded_default(data_dir=tmp_path, sandbox_base_url="http://127.0.0.1:8000")
    assert values["FIELD_ENCRYPTION_KEYS"].count(",") == 1


def test_commands_work_from_a_fresh_shell_with_the_written_env(tmp_path):
    path = tmp_path / ".env"
    envfile.write_once(path, envfile.embedded_default(data_dir=tmp_path / "var",
                                                      sandbox_base_url="http://127.0.0.1:8000"))
    env = clean_env(ENV_FILE=str(path))
    for args in (["migrate", "--noinput"], ["audit_verify"], ["check"]):
        result = manage(*args, env=env)
        assert result.returncode == 0, (args, result.stderr[-2000:])
        assert "Traceback" not in result.stderr
    assert (tmp_path / "var" / "controlplane.sqlite3").exists()


def test_without_env_outside_debug_the_error_names_the_setting():
    result = manage("check", env=clean_env(ENV_FILE=""))
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def example_values() -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def test_every_setting_read_is_listed_in_env_example():
    import re

    source = (ROOT / "controlplane" / "settings.py").read_text()
    read = set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z_][A-Z0-9_]*)"', source))
    listed = set(example_values()) | {"ENV_FILE"}
    assert read - listed == set(), f"settings read but not in .env.example: {sorted(read - listed)}"


def test_check_deploy_with_the_production_example_is_clean(tmp_path):
    values = example_values()
    values.update(
        SECRET_KEY=envfile.embedded_default(data_dir=tmp_path, sandbox_base_url="")["SECRET_KEY"],
        FIELD_ENCRYPTION_KEYS=envfile.embedded_default(data_dir=tmp_path, sandbox_base_url="")[
            "FIELD_ENCRYPTION_KEYS"],
        AUDIT_KEYS=envfile.embedded_default(data_dir=tmp_path, sandbox_base_url="")["AUDIT_KEYS"],
        DATA_DIR=str(tmp_path),
    )
    assert values["DEBUG"] == "0"
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=clean_env(ENV_FILE="", **values))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 silenced" in result.stdout or "no issues" in result.stdout


def test_database_connections_persist_and_are_health_checked_from_the_environment(tmp_path):
    probe = ("from django.db import connection as c; "
             "print(c.settings_dict['CONN_MAX_AGE'], c.settings_dict['CONN_HEALTH_CHECKS'])")
    base = {"DEBUG": "1", "DATA_DIR": str(tmp_path), "ENV_FILE": ""}
    default = manage("shell", "--no-imports", "-c", probe, env=clean_env(**base))
    assert default.returncode == 0, default.stderr
    assert default.stdout.split() == ["60", "True"]
    tuned = manage("shell", "--no-imports", "-c", probe,
                   env=clean_env(**base, CONN_MAX_AGE="0", CONN_HEALTH_CHECKS="0"))
    assert tuned.stdout.split() == ["0", "False"], tuned.stderr


def test_the_asgi_web_process_borrows_postgresql_connections_from_a_pool(tmp_path):
    """Under ASGI each request's sync code runs in a thread that ends with it, so the web process
    (controlplane/asgi.py sets CONTROLPLANE_ASGI=1) uses psycopg's pool on PostgreSQL unless
    DATABASE_POOL=0; other processes and SQLite keep the persistent connection."""
    probe = ("from django.db import connection as c; "
             "print(c.settings_dict['CONN_MAX_AGE'], c.settings_dict['CONN_HEALTH_CHECKS'], "
             "c.settings_dict['OPTIONS'].get('pool', {}).get('max_size'))")
    base = {"DEBUG": "1", "DATA_DIR": str(tmp_path), "ENV_FILE": "",
            "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/unused"}
    pooled = manage("shell", "--no-imports", "-c", probe, env=clean_env(**base, CONTROLPLANE_ASGI="1"))
    assert pooled.stdout.split() == ["0", "False", "20"], pooled.stderr
    worker = manage("shell", "--no-imports", "-c", probe, env=clean_env(**base, DATABASE_POOL="1"))
    assert worker.stdout.split() == ["60", "True", "None"], worker.stderr
    opted_out = manage("shell", "--no-imports", "-c", probe,
                       env=clean_env(**base, CONTROLPLANE_ASGI="1", DATABASE_POOL="0"))
    assert opted_out.stdout.split() == ["60", "True", "None"], opted_out.stderr
    sqlite = manage("shell", "--no-imports", "-c", probe,
                    env=clean_env(DEBUG="1", DATA_DIR=str(tmp_path), ENV_FILE="", CONTROLPLANE_ASGI="1"))
    assert sqlite.stdout.split() == ["60", "True", "None"], sqlite.stderr
