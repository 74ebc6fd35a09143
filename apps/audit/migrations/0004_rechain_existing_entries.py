"""Re-chain the entries written under the old single, unkeyed SHA-256 chain.

First the old chain is verified exactly as the old `audit_verify` did (content hash, links, no gap,
head at the last entry). Then every entry moves to its portal's chain (or the system chain),
renumbered from 1 in its old order, and is re-hashed with the HMAC of the current signing key.
Content (time, action, actor, data) is untouched. One `audit.migrated` entry on the system chain
records how many legacy entries there were, the old head hash and whether the old chain verified,
so a legacy log that was already broken is recorded as such, never silently laundered.
"""

import hashlib

from django.db import migrations

GENESIS = "0" * 64


def _legacy_hash(entry, canonical_json) -> str:
    return hashlib.sha256(canonical_json({
        "prev": entry.prev_hash, "seq": entry.seq, "at": entry.created_at.isoformat(), "action": entry.action,
        "actor_type": entry.actor_type, "actor": entry.actor, "portal": entry.portal,
        "plan": str(entry.plan_id) if entry.plan_id else None, "data": entry.data,
    }).encode("utf-8")).hexdigest()


def _verify_legacy(entries, head, canonical_json) -> str:
    prev, expected = GENESIS, 1
    for entry in entries:
        if entry.seq != expected:
            return f"entry #{expected} is missing"
        if entry.prev_hash != prev:
            return f"entry #{entry.seq} does not link to the previous entry"
        if _legacy_hash(entry, canonical_json) != entry.hash:
            return f"entry #{entry.seq} does not match its hash"
        prev, expected = entry.hash, expected + 1
    head_seq, head_hash = (head.seq, head.hash) if head else (0, GENESIS)
    if head_seq != expected - 1 or head_hash != prev:
        return f"entries after #{expected - 1} were deleted (head is #{head_seq})"
    return ""


def rechain(apps, schema_editor):
    from django.utils import timezone

    from apps.audit.keys import macs, signing_kid
    from apps.audit.models import chain_for
    from apps.audit.offline_verify import canonical_json

    AuditEntry = apps.get_model("audit", "AuditEntry")
    AuditHead = apps.get_model("audit", "AuditHead")
    LegacyAuditHead = apps.get_model("audit", "LegacyAuditHead")
    entries = list(AuditEntry.objects.order_by("seq"))
    if not entries:
        return
    legacy_head = LegacyAuditHead.objects.filter(pk=1).first()
    problem = _verify_legacy(entries, legacy_head, canonical_json)
    legacy = {"legacy_entries": len(entries), "legacy_head_hash": entries[-1].hash,
              "legacy_chain_ok": not problem, "legacy_problem": problem}
    kid, mac = signing_kid(), macs()
    heads: dict[str, tuple[int, str]] = {}

    def link(entry):
        seq, prev = heads.get(entry.chain, (0, GENESIS))
        entry.seq, entry.prev_hash, entry.key_id = seq + 1, prev, kid
        entry.hash = mac.entry_hash(
            chain=entry.chain, seq=entry.seq, prev_hash=prev, created_at=entry.created_at.isoformat(),
            action=entry.action, actor_type=entry.actor_type, actor=entry.actor, portal=entry.portal,
            plan_id=str(entry.plan_id) if entry.plan_id else None, data=entry.data, key_id=kid)
        heads[entry.chain] = (entry.seq, entry.hash)

    for entry in entries:
        entry.chain = chain_for(entry.portal)
        link(entry)
    AuditEntry.objects.bulk_update(entries, ["chain", "seq", "prev_hash", "hash", "key_id"], batch_size=1000)
    marker = AuditEntry(chain="system", created_at=timezone.now(), action="audit.migrated", actor_type="system",
                        actor="system", portal="", plan_id=None, data=legacy)
    link(marker)
    marker.save(force_insert=True)
    AuditHead.objects.bulk_create([AuditHead(chain=c, seq=s, hash=h) for c, (s, h) in heads.items()])


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_keyed_chains_schema")]
    operations = [migrations.RunPython(rechain, migrations.RunPython.noop)]
