"""The one writer of the audit log, and its verifier.

Every state-changing service calls `audit_record(...)` inside its own transaction (house rule 3),
so the entry commits or rolls back with the change. Writers serialise on the single AuditHead row
(`select_for_update`), so the chain never forks, even with many workers on PostgreSQL.
"""

import json
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from apps.core.canonical import canonical_json, sha256_hex

from . import registry
from .models import AuditEntry, AuditHead

GENESIS = "0" * 64

# Keys whose values never enter the log, wherever they appear in `data`.
_SECRET_KEYS = {
    "webhook_code", "code", "access_token", "refresh_token", "client_secret", "application_token",
    "auth", "token", "password", "secret",
}


def _scrub(value):
    if isinstance(value, dict):
        return {k: ("***" if str(k).lower() in _SECRET_KEYS else _scrub(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def entry_hash(*, prev_hash: str, seq: int, created_at: str, action: str, actor_type: str, actor: str,
               portal: str, plan_id: str | None, data: dict) -> str:
    return sha256_hex({
        "prev": prev_hash, "seq": seq, "at": created_at, "action": action, "actor_type": actor_type,
        "actor": actor, "portal": portal, "plan": plan_id, "data": data,
    })


def _hash_of(entry: AuditEntry) -> str:
    return entry_hash(
        prev_hash=entry.prev_hash, seq=entry.seq, created_at=entry.created_at.isoformat(), action=entry.action,
        actor_type=entry.actor_type, actor=entry.actor, portal=entry.portal,
        plan_id=str(entry.plan_id) if entry.plan_id else None, data=entry.data,
    )


def actor_of(actor) -> tuple[str, str]:
    """(actor_type, label) for a user, an agent, or None (the system)."""
    if actor is None:
        return "system", "system"
    if actor.__class__.__name__ == "Agent":
        return "agent", actor.slug
    return "user", actor.get_username()


def audit_record(*, action: str, actor=None, portal=None, plan=None, data: dict | None = None) -> AuditEntry:
    registry.get(action)  # unregistered actions fail loudly
    actor_type, actor_label = actor_of(actor)
    with transaction.atomic():
        head = AuditHead.objects.select_for_update().filter(pk=1).first()
        if head is None:  # a fresh or flushed database: the migration's row is gone
            AuditHead.objects.get_or_create(pk=1)
            head = AuditHead.objects.select_for_update().get(pk=1)
        created_at = timezone.now()
        seq = head.seq + 1
        # Round-trip through JSON so the hash computed now equals the one computed after a read.
        payload = json.loads(canonical_json(_scrub(data or {})))
        portal_slug = getattr(portal, "slug", portal) or ""
        plan_id = getattr(plan, "pk", plan)
        entry = AuditEntry(
            seq=seq, created_at=created_at, action=action, actor_type=actor_type, actor=actor_label,
            portal=portal_slug, plan_id=plan_id, data=payload, prev_hash=head.hash,
        )
        entry.hash = _hash_of(entry)
        entry.save(force_insert=True)
        head.seq, head.hash = seq, entry.hash
        head.save(update_fields=["seq", "hash"])
    return entry


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    bad_seq: int | None = None
    problem: str = ""


def audit_verify() -> VerifyResult:
    """Walk the chain: every entry's hash must match its content, link to the previous one and
    follow it without a gap; the head must point at the last entry (catches deleting the tail)."""
    prev_hash, expected_seq, checked = GENESIS, 1, 0
    for entry in AuditEntry.objects.order_by("seq").iterator(chunk_size=2000):
        if entry.seq != expected_seq:
            return VerifyResult(False, checked, expected_seq, f"entry #{expected_seq} is missing (found #{entry.seq})")
        if entry.prev_hash != prev_hash:
            return VerifyResult(False, checked, entry.seq, "does not link to the previous entry (reordered or edited)")
        if _hash_of(entry) != entry.hash:
            return VerifyResult(False, checked, entry.seq, "content does not match its hash (edited)")
        prev_hash, expected_seq, checked = entry.hash, expected_seq + 1, checked + 1
    head = AuditHead.objects.filter(pk=1).first()
    head_seq, head_hash = (head.seq, head.hash) if head else (0, GENESIS)
    if head_seq != checked or head_hash != prev_hash:
        return VerifyResult(False, checked, checked + 1, f"entries after #{checked} were deleted (head is #{head_seq})")
    return VerifyResult(True, checked)
