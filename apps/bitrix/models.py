from django.db import models


class PortalLimiter(models.Model):
    """The client side of a portal's leaky bucket (FACTS §5), shared by every worker process.
    `level` and `updated_at` (Unix seconds) are the state of `apps.core.leakybucket`; the row
    is only changed under `select_for_update` in a short transaction (apps.bitrix.limiter)."""

    portal = models.OneToOneField(
        "portals.Portal", on_delete=models.CASCADE, primary_key=True, related_name="limiter"
    )
    level = models.FloatField(default=0.0)
    updated_at = models.FloatField(default=0.0)

    def __str__(self):
        return f"limiter for {self.portal_id}: {self.level:.2f}"


class MethodBlock(models.Model):
    """A method held on one portal until `blocked_until` after OPERATION_TIME_LIMIT (429):
    calls to it raise HeldUntilReset without being sent (FACTS §5; apps.bitrix.limiter)."""

    portal = models.ForeignKey("portals.Portal", on_delete=models.CASCADE, related_name="method_blocks")
    method = models.CharField(max_length=255, help_text="Normalised (lower-case) method name")
    blocked_until = models.DateTimeField()
    code = models.CharField(max_length=64, default="OPERATION_TIME_LIMIT")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["portal", "method"], name="bitrix_methodblock_unique"),
        ]

    def __str__(self):
        return f"{self.method} on {self.portal_id} until {self.blocked_until:%Y-%m-%d %H:%M:%S}"
