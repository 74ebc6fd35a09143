"""The audit table on PostgreSQL: the trigger refuses UPDATE and DELETE, the application role
cannot switch it off, and writers lock only their own chain's head."""

import threading
import uuid

import pytest
from django.db import DatabaseError, connection, connections, transaction

from apps.audit import registry
from apps.audit.models import AuditEntry, AuditHead
from apps.audit.services import audit_record, audit_verify
from tests.services import needs_postgres

pytestmark = [
    pytest.mark.services,
    needs_postgres,
]


def refused(sql_or_callable, params=()):
    """Run in a savepoint; return the database's error text (or '' if it was not refused)."""
    try:
        with transaction.atomic():
            if callable(sql_or_callable):
                sql_or_callable()
            else:
                with connection.cursor() as cursor:
                    cursor.execute(sql_or_callable, params)
    except DatabaseError as exc:
        return str(exc)
    return ""


@pytest.mark.django_db
def test_update_and_delete_are_refused_by_the_trigger():
    entry = audit_record(action=registry.GRANT_CHANGED, portal="acme", data={"i": 1})
    assert "append-only: UPDATE refused" in refused(lambda: AuditEntry.objects.filter(pk=entry.pk).update(data={}))
    assert "append-only: DELETE refused" in refused(lambda: AuditEntry.objects.filter(pk=entry.pk).delete())
    assert AuditEntry.objects.get(pk=entry.pk).data == {"i": 1}
    assert audit_verify().ok


@pytest.mark.django_db
def test_the_application_role_cannot_tamper_or_switch_the_trigger_off():
    role = f"cp_audit_app_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:  # rolled back with the test: the role does not outlive it
        cursor.execute(f'CREATE ROLE "{role}" NOLOGIN NOSUPERUSER NOCREATEROLE')
        cursor.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}"')
        cursor.execute(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
        cursor.execute(f'SET ROLE "{role}"')
    try:
        entry = audit_record(action=registry.GRANT_CHANGED, portal="acme", data={"i": 1})  # appending works
        assert entry.seq == 1
        assert "append-only: UPDATE refused" in refused(
            "UPDATE audit_auditentry SET data = '{}' WHERE id = %s", [entry.pk])
        assert "append-only: DELETE refused" in refused("DELETE FROM audit_auditentry WHERE id = %s", [entry.pk])
        assert "permission denied" in refused("SET session_replication_role = replica")
        assert "must be owner" in refused("ALTER TABLE audit_auditentry DISABLE TRIGGER audit_entry_append_only")
        assert "must be owner" in refused("DROP TRIGGER audit_entry_append_only ON audit_auditentry")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET ROLE")
    assert AuditEntry.objects.get(pk=entry.pk).data == {"i": 1}


@pytest.mark.django_db
def test_a_superuser_test_session_can_still_tamper_and_verify_detects_it():
    """How the tamper tests run on PostgreSQL (tests/integration/audit/conftest.py: tampering)."""
    from tests.integration.audit.conftest import tampering

    for i in range(3):
        audit_record(action=registry.GRANT_CHANGED, portal="acme", data={"i": i})
    with tampering():
        AuditEntry.objects.filter(chain="portal:acme", seq=2).update(data={"i": 99})
    assert "append-only" in refused(lambda: AuditEntry.objects.filter(seq=1).delete())  # trigger back on
    result = audit_verify()
    assert not result.ok and result.bad_seq == 2


@pytest.mark.django_db(transaction=True)
def test_writers_on_different_portals_never_wait_for_each_other():
    audit_record(action=registry.GRANT_CHANGED, portal="acme", data={})
    holding, release, errors = threading.Event(), threading.Event(), []

    def hold_acme():
        try:
            with transaction.atomic():
                audit_record(action=registry.GRANT_CHANGED, portal="acme", data={"held": True})
                holding.set()
                release.wait(60)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=hold_acme)
    thread.start()
    try:
        assert holding.wait(60)
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '10s'")  # would expire: acme is held until released
            audit_record(action=registry.GRANT_CHANGED, portal="beta", data={})
            audit_record(action=registry.AGENT_CREATED, data={"agent": "a"})
        message = refused(lambda: (connection.cursor().execute("SET LOCAL lock_timeout = '100ms'"),
                                   audit_record(action=registry.GRANT_CHANGED, portal="acme", data={})))
        assert "lock timeout" in message  # the same chain does wait
    finally:
        release.set()
        thread.join(60)
    assert errors == []
    assert dict(AuditHead.objects.values_list("chain", "seq")) == {"portal:acme": 2, "portal:beta": 1, "system": 1}
    assert audit_verify().ok


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_never_fork_a_chain():
    barrier, errors = threading.Barrier(6), []

    def write(portal):
        try:
            barrier.wait(30)
            for i in range(15):
                audit_record(action=registry.GRANT_CHANGED, portal=portal, data={"i": i})
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(p,)) for p in ("acme", "acme", "beta", "beta", None, None)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert dict(AuditHead.objects.values_list("chain", "seq")) == {"portal:acme": 30, "portal:beta": 30, "system": 30}
    result = audit_verify()
    assert result.ok and result.checked == 90


@pytest.mark.django_db
def test_the_head_moves_inside_the_entries_insert_and_the_chain_verifies():
    """Two statements under the head's lock, not three (one round trip less for the writers of a
    busy portal to wait on): the locking read, then the INSERT carrying the head's UPDATE."""
    from django.test.utils import CaptureQueriesContext

    audit_record(action=registry.GRANT_CHANGED, portal="acme", data={"i": 0})
    with CaptureQueriesContext(connection) as queries:
        audit_record(action=registry.GRANT_CHANGED, portal="acme", data={"i": 1})
    assert [q["sql"].split()[0].upper() for q in queries.captured_queries] == ["SELECT", "WITH"]
    assert "FOR UPDATE" in queries.captured_queries[0]["sql"]
    head = AuditHead.objects.get(chain="portal:acme")
    last = AuditEntry.objects.filter(chain="portal:acme").order_by("-seq").first()
    assert (head.seq, head.hash) == (last.seq, last.hash) == (2, last.hash)
    assert audit_verify().ok
