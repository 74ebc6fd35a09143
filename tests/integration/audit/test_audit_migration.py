"""Migration 0004 verifies the old unkeyed chain, then re-chains its entries per portal under the
audit key, and records the outcome (a broken legacy log is recorded as broken, not laundered)."""

import datetime
import hashlib
import uuid

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from apps.audit.models import AuditEntry, AuditHead
from apps.audit.offline_verify import canonical_json
from apps.audit.services import audit_verify

LEGACY = ("audit", "0002_audit_head_row")
LATEST = ("audit", "0005_append_only")


def _legacy_hash(prev, seq, at, action, portal, plan, data):
    return hashlib.sha256(canonical_json({
        "prev": prev, "seq": seq, "at": at.isoformat(), "action": action, "actor_type": "system",
        "actor": "system", "portal": portal, "plan": plan, "data": data}).encode()).hexdigest()


def _migrate(target):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])
    return executor.loader.project_state([target]).apps


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("broken", [False, True])
def test_legacy_chain_is_verified_and_rechained(broken):
    apps = _migrate(LEGACY)
    try:
        Entry, Head = apps.get_model("audit", "AuditEntry"), apps.get_model("audit", "AuditHead")
        plan = str(uuid.uuid4())
        start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
        prev = "0" * 64
        rows = [("acme", {"i": 1}), ("", {"agent": "a"}), ("acme", {"i": 2}), ("beta", {"i": 3})]
        for seq, (portal, data) in enumerate(rows, 1):
            at = start + datetime.timedelta(minutes=seq)
            digest = _legacy_hash(prev, seq, at, "grant.changed", portal, plan, data)
            Entry.objects.create(seq=seq, created_at=at, action="grant.changed", actor_type="system", actor="system",
                                 portal=portal, plan_id=plan, data=data, prev_hash=prev, hash=digest)
            prev = digest
        Head.objects.update_or_create(pk=1, defaults={"seq": len(rows), "hash": prev})
        if broken:
            Entry.objects.filter(seq=2).update(data={"agent": "edited"})
    finally:
        _migrate(LATEST)

    chains = list(AuditEntry.objects.order_by("chain", "seq").values_list("chain", "seq", "data"))
    assert chains == [
        ("portal:acme", 1, {"i": 1}), ("portal:acme", 2, {"i": 2}), ("portal:beta", 1, {"i": 3}),
        ("system", 1, {"agent": "edited" if broken else "a"}), ("system", 2, chains[-1][2]),
    ]
    marker = AuditEntry.objects.get(chain="system", seq=2)
    assert marker.action == "audit.migrated"
    assert marker.data["legacy_entries"] == 4 and marker.data["legacy_head_hash"] == prev
    assert marker.data["legacy_chain_ok"] is (not broken)
    assert marker.data["legacy_problem"] == ("entry #2 does not match its hash" if broken else "")
    assert dict(AuditHead.objects.values_list("chain", "seq")) == {"portal:acme": 2, "portal:beta": 1, "system": 2}
    assert set(AuditEntry.objects.values_list("key_id", flat=True)) == {"t2"}
    assert audit_verify().ok
