from django.conf import settings
from django.db import models

from apps.core.models import TimeStampedModel


class PolicyChoice(models.TextChoices):
    AUTO = "auto", "Execute at once"
    APPROVE = "approve", "One approver"
    APPROVE2 = "approve2", "Two distinct approvers"
    DENY = "deny", "Deny"


class PackGrant(TimeStampedModel):
    """Agent × portal × pack, with a policy per risk level."""

    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="grants")
    portal = models.ForeignKey("portals.Portal", on_delete=models.CASCADE, related_name="grants")
    pack = models.CharField(max_length=64, help_text="A built-in pack name or a custom pack's name")
    read_policy = models.CharField(max_length=16, choices=PolicyChoice.choices, default=PolicyChoice.AUTO)
    write_policy = models.CharField(max_length=16, choices=PolicyChoice.choices, default=PolicyChoice.APPROVE)
    destructive_policy = models.CharField(
        max_length=16, choices=PolicyChoice.choices, default=PolicyChoice.APPROVE2
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["agent", "portal", "pack"], name="packgrant_unique"),
        ]
        ordering = ["agent", "portal", "pack"]

    def __str__(self):
        return f"{self.agent} → {self.portal}: {self.pack}"

    def policy_for(self, risk: str) -> str:
        return {"read": self.read_policy, "write": self.write_policy, "destructive": self.destructive_policy}[risk]


class CustomPack(TimeStampedModel):
    """An admin-defined pack: method patterns (one per line, `*` wildcard) for methods the
    built-in packs leave out. Risk still comes from the catalog and verb rules (fail closed)."""

    name = models.SlugField(max_length=64, unique=True)
    description = models.CharField(max_length=300, blank=True)
    patterns = models.TextField(help_text="One method pattern per line, e.g. `crm.item.*` or `vendor.thing.get`")

    def __str__(self):
        return self.name

    def pattern_list(self) -> list[str]:
        return [line.strip() for line in self.patterns.splitlines() if line.strip()]
