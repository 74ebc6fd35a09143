import contextlib

import pytest
from django.db import connection


@pytest.fixture(autouse=True)
def checkpoint_file(settings, tmp_path):
    """Each test gets its own checkpoint sink (the file outlives the test's rolled-back rows)."""
    path = tmp_path / "sink" / "checkpoints.jsonl"
    settings.AUDIT_CHECKPOINT_PATH = str(path)
    settings.AUDIT_CHECKPOINT_COMMAND = ""
    settings.AUDIT_CHECKPOINT_URL = ""
    return path


@contextlib.contextmanager
def tampering():
    """Act as an attacker with direct write access to the database. On PostgreSQL the append-only
    trigger refuses UPDATE/DELETE; only a superuser can switch triggers off for its session
    (`session_replication_role = replica`), which is what the test database user is. The
    application role cannot (tests/services/test_audit_append_only.py)."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET session_replication_role = DEFAULT")
