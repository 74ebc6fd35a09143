from django.db import models

SYSTEM_CHAIN = "system"
PORTAL_CHAIN_PREFIX = "portal:"


def chain_for(portal_slug: str) -> str:
    """Each portal has its own chain; entries with no portal go to the system chain."""
    return f"{PORTAL_CHAIN_PREFIX}{portal_slug}" if portal_slug else SYSTEM_CHAIN


class AuditEntry(models.Model):
    """Append-only, one keyed hash chain per portal (plus the system chain): `hash` is an
    HMAC-SHA256 under the key `key_id` names (from AUDIT_KEYS, never stored here) over the chain,
    `seq`, `prev_hash` and this entry's canonical content; `seq` counts from 1 without gaps within
    a chain. Only `apps.audit.services` writes here; on PostgreSQL a trigger refuses UPDATE and
    DELETE (migration 0004)."""

    chain = models.CharField(max_length=80)
    seq = models.PositiveBigIntegerField()
    created_at = models.DateTimeField()
    action = models.CharField(max_length=64, db_index=True)
    actor_type = models.CharField(max_length=16)  # user | agent | system
    actor = models.CharField(max_length=200, blank=True)
    portal = models.CharField(max_length=64, blank=True, db_index=True)
    plan_id = models.UUIDField(null=True, blank=True, db_index=True)
    data = models.JSONField(default=dict)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)
    key_id = models.CharField(max_length=32)

    class Meta:
        ordering = ["chain", "seq"]
        verbose_name_plural = "audit entries"
        constraints = [models.UniqueConstraint(fields=["chain", "seq"], name="audit_entry_chain_seq")]

    def __str__(self):
        return f"{self.chain} #{self.seq} {self.action}"


class AuditHead(models.Model):
    """One row per chain, locked (`select_for_update`) by that chain's writers only, so the chain
    never forks and writers on different portals never wait for each other."""

    chain = models.CharField(max_length=80, primary_key=True)
    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self):
        return f"{self.chain} head #{self.seq}"


class AuditCheckpoint(models.Model):
    """A copy of each checkpoint published outside the database (the sink is the authority).
    Signed, so a database writer can delete copies but cannot forge one."""

    chain = models.CharField(max_length=80)
    seq = models.PositiveBigIntegerField()
    hash = models.CharField(max_length=64)
    at = models.CharField(max_length=40)  # the signed ISO time, verbatim
    kid = models.CharField(max_length=32)
    sig = models.CharField(max_length=64)

    class Meta:
        ordering = ["chain", "seq"]
        indexes = [models.Index(fields=["chain", "seq"], name="audit_ckpt_chain_seq")]

    def __str__(self):
        return f"checkpoint {self.chain} #{self.seq}"

    def as_dict(self) -> dict:
        return {"type": "audit-checkpoint", "chain": self.chain, "seq": self.seq, "hash": self.hash,
                "at": self.at, "kid": self.kid, "sig": self.sig}
