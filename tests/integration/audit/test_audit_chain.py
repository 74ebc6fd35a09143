"""The keyed, per-portal chains: what `audit_verify` detects, entry by entry and against the
signed checkpoints published outside the database."""

import hashlib
import hmac
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from apps.audit import registry
from apps.audit.models import AuditCheckpoint, AuditEntry, AuditHead
from apps.audit.offline_verify import canonical_json, entry_message
from apps.audit.services import _hash_of, audit_checkpoint, audit_record, audit_verify

from .conftest import tampering

pytestmark = pytest.mark.django_db

CHAIN = "portal:acme"
OLD_KEY = "t1:b2xkLWF1ZGl0LWtleS1mb3ItdGVzdHMtMDAwMDAwMDA="
NEW_KEY = "t2:YXVkaXQta2V5LWZvci10ZXN0cy1vbmx5LTAwMDAwMDA="


@pytest.fixture
def chain(db):
    for i in range(5):
        audit_record(action=registry.GRANT_CHANGED, portal="acme", data={"i": i, "nested": {"a": [1, 2]}})
    return list(AuditEntry.objects.filter(chain=CHAIN).order_by("seq"))


def forged_hash(entry: AuditEntry, key: bytes) -> str:
    """What an attacker without the audit key computes: the project's own message format, under a
    key they guess."""
    message = entry_message(chain=entry.chain, seq=entry.seq, prev_hash=entry.prev_hash,
                            created_at=entry.created_at.isoformat(), action=entry.action,
                            actor_type=entry.actor_type, actor=entry.actor, portal=entry.portal,
                            plan_id=str(entry.plan_id) if entry.plan_id else None, data=entry.data,
                            key_id=entry.key_id)
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def rehash_from(seq: int, key: bytes) -> None:
    """Re-hash every entry from `seq` on with `key` (re-linking them) and move the head along."""
    entries = list(AuditEntry.objects.filter(chain=CHAIN, seq__gte=seq).order_by("seq"))
    prev = AuditEntry.objects.get(chain=CHAIN, seq=seq - 1).hash if seq > 1 else "0" * 64
    with tampering():
        for entry in entries:
            entry.prev_hash = prev
            entry.hash = prev = forged_hash(entry, key)
            entry.save()
        AuditHead.objects.filter(chain=CHAIN).update(seq=entries[-1].seq, hash=prev)


# --- chains and keys ----------------------------------------------------------------------------


def test_each_portal_has_its_own_chain_and_the_system_one(db):
    audit_record(action=registry.GRANT_CHANGED, portal="acme", data={})
    audit_record(action=registry.GRANT_CHANGED, portal="beta", data={})
    audit_record(action=registry.AGENT_CREATED, data={"agent": "a"})
    audit_record(action=registry.GRANT_CHANGED, portal="acme", data={})
    rows = sorted(AuditEntry.objects.values_list("chain", "seq"))
    assert rows == [("portal:acme", 1), ("portal:acme", 2), ("portal:beta", 1), ("system", 1)]
    assert dict(AuditHead.objects.values_list("chain", "seq")) == {"portal:acme": 2, "portal:beta": 1, "system": 1}
    result = audit_verify()
    assert result.ok and result.checked == 4 and result.chains == 3


def test_intact_chain_verifies(chain, capsys):
    assert audit_verify().ok
    call_command("audit_verify")
    out = capsys.readouterr().out
    assert "5 entries in 1 chain(s)" in out and "WITHOUT checkpoints" in out
    audit_checkpoint()
    call_command("audit_verify")
    assert "against 1 signed checkpoint(s)" in capsys.readouterr().out


def test_each_entry_links_to_the_previous_under_the_signing_key(chain):
    assert chain[0].prev_hash == "0" * 64
    for prev, entry in zip(chain, chain[1:], strict=False):
        assert entry.prev_hash == prev.hash
    assert {e.key_id for e in chain} == {"t2"}
    # The hash is an HMAC under the key, not a bare digest of the content.
    bare = hashlib.sha256(canonical_json({"x": 1}).encode()).hexdigest()
    assert chain[0].hash != bare and chain[0].hash == forged_hash(chain[0], b"audit-key-for-tests-only-0000000")


def test_rotated_keys_keep_older_entries_verifiable(chain, settings):
    settings.AUDIT_KEYS = [OLD_KEY]  # an older deployment signed with t1
    audit_record(action=registry.GRANT_CHANGED, portal="acme", data={"old": True})
    settings.AUDIT_KEYS = [NEW_KEY, OLD_KEY]  # t2 signs, t1 still verifies
    audit_record(action=registry.GRANT_CHANGED, portal="acme", data={"new": True})
    kids = list(AuditEntry.objects.filter(chain=CHAIN).order_by("seq").values_list("key_id", flat=True))
    assert kids == ["t2"] * 5 + ["t1", "t2"]
    assert audit_verify().ok
    settings.AUDIT_KEYS = [NEW_KEY]  # t1 retired too early: its entries can no longer be verified
    result = audit_verify()
    assert not result.ok and result.bad_seq == 6 and "unknown key id 't1'" in result.problem


def test_writers_lock_only_their_own_chain_head(db):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    audit_record(action=registry.GRANT_CHANGED, portal="acme", data={})
    with CaptureQueriesContext(connection) as queries:
        audit_record(action=registry.GRANT_CHANGED, portal="beta", data={})
    head_reads = [q["sql"] for q in queries if "audit_audithead" in q["sql"] and q["sql"].startswith("SELECT")]
    assert head_reads and all("portal:beta" in sql for sql in head_reads)


# --- tampering inside the chain -------------------------------------------------------------------


def test_edited_entry_is_named(chain):
    with tampering():
        AuditEntry.objects.filter(chain=CHAIN, seq=3).update(data={"i": 99})
    result = audit_verify()
    assert not result.ok and result.bad_seq == 3 and result.chain == CHAIN
    with pytest.raises(CommandError, match="portal:acme entry #3"):
        call_command("audit_verify")


def test_deleted_middle_entry_is_named(chain):
    with tampering():
        AuditEntry.objects.filter(chain=CHAIN, seq=2).delete()
    result = audit_verify()
    assert not result.ok and result.bad_seq == 2 and "#2 are missing" in result.problem


def test_deleted_last_entry_is_detected(chain):
    with tampering():
        AuditEntry.objects.filter(chain=CHAIN, seq=5).delete()
    result = audit_verify()
    assert not result.ok and result.bad_seq == 5 and "head is #5" in result.problem


def test_reordered_entries_are_detected(chain):
    a, b = chain[1], chain[2]
    with tampering():
        AuditEntry.objects.filter(pk=a.pk).update(seq=1000)
        AuditEntry.objects.filter(pk=b.pk).update(seq=a.seq)
        AuditEntry.objects.filter(pk=a.pk).update(seq=b.seq)
    result = audit_verify()
    assert not result.ok and result.bad_seq == 2


def test_entry_moved_to_another_chain_is_detected(chain):
    audit_record(action=registry.GRANT_CHANGED, portal="beta", data={})
    with tampering():
        AuditEntry.objects.filter(chain="portal:beta").delete()
        AuditEntry.objects.filter(chain=CHAIN, seq=5).update(chain="portal:beta", seq=1)
    result = audit_verify()
    assert not result.ok
    assert any("portal:beta: entry #1" in p for p in result.problems)
    assert any("portal:acme: entry #5" in p for p in result.problems)


def test_rehashed_edit_without_the_key_is_named(chain):
    """The attacker edits #3 and re-hashes everything after it with the project's own message
    format under a key they guess (SECRET_KEY, the old bare SHA-256): #3 is named."""
    with tampering():
        AuditEntry.objects.filter(chain=CHAIN, seq=3).update(data={"i": 42})
    rehash_from(3, key=b"test-secret-key-not-for-production")
    result = audit_verify()
    assert not result.ok and result.bad_seq == 3 and "keyed hash" in result.problem


def test_rehashed_edit_with_the_key_is_caught_by_a_checkpoint(chain):
    """Even a thief of the key cannot rewrite what a checkpoint already anchors."""
    audit_checkpoint()
    with tampering():
        AuditEntry.objects.filter(chain=CHAIN, seq=3).update(data={"i": 42})
    rehash_from(3, key=b"audit-key-for-tests-only-0000000")
    result = audit_verify()
    assert not result.ok and result.bad_seq == 5 and "signed checkpoint" in result.problem


def test_forged_append_without_the_key_is_named(chain):
    last = chain[-1]
    forged = AuditEntry(chain=CHAIN, seq=6, created_at=timezone.now(), action=registry.PLAN_APPROVAL,
                        actor_type="user", actor="mallory", portal="acme", data={"decision": "approve"},
                        prev_hash=last.hash, key_id="t2")
    forged.hash = forged_hash(forged, b"guessed-key-0000000000000000000")
    forged.save()
    AuditHead.objects.filter(chain=CHAIN).update(seq=6, hash=forged.hash)
    result = audit_verify()
    assert not result.ok and result.bad_seq == 6


def test_forged_append_under_an_invented_key_id_is_named(chain):
    forged = AuditEntry(chain=CHAIN, seq=6, created_at=timezone.now(), action=registry.GRANT_CHANGED,
                        actor_type="system", actor="system", portal="acme", data={}, prev_hash=chain[-1].hash,
                        key_id="mallory")
    forged.hash = forged_hash(forged, b"mallory-key-00000000000000000000")
    forged.save()
    AuditHead.objects.filter(chain=CHAIN).update(seq=6, hash=forged.hash)
    result = audit_verify()
    assert not result.ok and result.bad_seq == 6 and "unknown key id 'mallory'" in result.problem


# --- tampering only the checkpoints can reveal ------------------------------------------------------


def test_truncation_with_a_rewound_head_is_detected_by_the_checkpoint(chain):
    audit_checkpoint()
    with tampering():
        AuditEntry.objects.filter(chain=CHAIN, seq__gte=4).delete()
    AuditHead.objects.filter(chain=CHAIN).update(seq=3, hash=chain[2].hash)
    AuditCheckpoint.objects.all().delete()  # the database copies go too; the sink file remains
    result = audit_verify()
    assert not result.ok and result.bad_seq == 4
    assert "#4..#5 are missing: the tail was truncated and the head rewound" in result.problem
    with pytest.raises(CommandError, match=r"#4\.\.#5"):
        call_command("audit_verify")


def test_truncation_with_a_rewound_head_passes_without_checkpoints(chain, capsys):
    """The limit the checkpoints exist for: without one, a consistent truncation is invisible
    (the command says so)."""
    with tampering():
        AuditEntry.objects.filter(chain=CHAIN, seq__gte=4).delete()
    AuditHead.objects.filter(chain=CHAIN).update(seq=3, hash=chain[2].hash)
    assert audit_verify().ok
    call_command("audit_verify")
    assert "WITHOUT checkpoints" in capsys.readouterr().out


def test_wiped_chain_is_detected(chain):
    audit_checkpoint()
    with tampering():
        AuditEntry.objects.all().delete()
    AuditHead.objects.all().delete()
    AuditCheckpoint.objects.all().delete()
    result = audit_verify()
    assert not result.ok and result.chain == CHAIN and result.bad_seq == 1
    assert "#1..#5 are missing: the chain was wiped" in result.problem


def test_wiped_and_restarted_chain_is_detected(chain):
    """Wiped, then the application writes on: the new #5 is not the entry the checkpoint signed."""
    audit_checkpoint()
    with tampering():
        AuditEntry.objects.all().delete()
    AuditHead.objects.all().delete()
    AuditCheckpoint.objects.all().delete()
    for i in range(6):
        audit_record(action=registry.GRANT_CHANGED, portal="acme", data={"again": i})
    result = audit_verify()
    assert not result.ok and result.bad_seq == 5 and "rewritten" in result.problem


def test_checkpoint_forged_in_the_sink_is_detected(chain, checkpoint_file):
    audit_checkpoint()
    line = json.loads(checkpoint_file.read_text().splitlines()[0])
    line.update(seq=50, hash="f" * 64)  # claims the chain once ran to #50, signature left as is
    with checkpoint_file.open("a") as fh:
        fh.write(json.dumps(line) + "\n")
    result = audit_verify()
    assert not result.ok and any("signature is invalid" in p for p in result.problems)


def test_verify_reads_checkpoints_fetched_from_another_sink(chain, tmp_path, settings, checkpoint_file):
    audit_checkpoint()
    fetched = tmp_path / "fetched.jsonl"
    fetched.write_text(checkpoint_file.read_text())
    checkpoint_file.unlink()
    AuditCheckpoint.objects.all().delete()
    with tampering():
        AuditEntry.objects.filter(chain=CHAIN, seq=5).delete()
    AuditHead.objects.filter(chain=CHAIN).update(seq=4, hash=chain[3].hash)
    assert audit_verify().ok  # nothing left to compare with here
    with pytest.raises(CommandError, match="#5"):
        call_command("audit_verify", checkpoints=str(fetched))


# --- the registry ---------------------------------------------------------------------------------


def test_unregistered_action_is_refused(db):
    with pytest.raises(ValueError):
        audit_record(action="made.up")


def test_duplicate_registration_fails():
    with pytest.raises(ValueError):
        registry.register(registry.PLAN_SUBMITTED, "again")


def test_hash_of_a_stored_entry_is_stable(chain):
    stored = AuditEntry.objects.get(chain=CHAIN, seq=2)
    assert _hash_of(stored) == stored.hash


def test_a_checkpoint_file_named_but_missing_is_a_failure(chain, tmp_path):
    with pytest.raises(CommandError, match="cannot be read"):
        call_command("audit_verify", checkpoints=str(tmp_path / "nowhere.jsonl"))
