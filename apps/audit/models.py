from django.db import models


class AuditEntry(models.Model):
    """Append-only and hash-chained: `hash` = SHA-256 over `prev_hash` and this entry's
    canonical content, `seq` counts without gaps. Only `apps.audit.services` writes here."""

    seq = models.PositiveBigIntegerField(unique=True)
    created_at = models.DateTimeField()
    action = models.CharField(max_length=64, db_index=True)
    actor_type = models.CharField(max_length=16)  # user | agent | system
    actor = models.CharField(max_length=200, blank=True)
    portal = models.CharField(max_length=64, blank=True, db_index=True)
    plan_id = models.UUIDField(null=True, blank=True, db_index=True)
    data = models.JSONField(default=dict)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["seq"]
        verbose_name_plural = "audit entries"

    def __str__(self):
        return f"#{self.seq} {self.action}"


class AuditHead(models.Model):
    """A single row locked by every writer so the chain never forks under concurrency."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self):
        return f"audit head #{self.seq}"
