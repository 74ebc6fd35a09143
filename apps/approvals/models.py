"""Agent callbacks: the signing secret per agent and one row per delivery of a plan's final state."""

import uuid

from django.db import models

from apps.portals.crypto import EncryptedTextField


class CallbackSecret(models.Model):
    """The key an agent verifies our callbacks with. Shown once when issued; ciphertext at rest."""

    agent = models.OneToOneField("agents.Agent", on_delete=models.CASCADE, related_name="callback_secret")
    secret = EncryptedTextField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"callback secret of {self.agent_id}"

    def __repr__(self):
        return f"<CallbackSecret agent={self.agent_id}>"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Waiting to be sent"
    DELIVERED = "delivered", "Delivered (2xx)"
    FAILED = "failed", "Gave up after retries"
    REFUSED = "refused", "Refused: the address is not public"


class CallbackDelivery(models.Model):
    """One notice to an agent that its plan reached a final state. A row first, a task second."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    plan = models.ForeignKey("plans.Plan", on_delete=models.CASCADE, related_name="callback_deliveries")
    url = models.URLField(max_length=500)
    plan_status = models.CharField(max_length=32, help_text="The final state this delivery reports")
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_http_status = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "callback deliveries"
        constraints = [
            models.UniqueConstraint(fields=["plan", "plan_status"], name="callback_one_per_final_state"),
        ]

    def __str__(self):
        return f"callback for {self.plan_id} ({self.plan_status}): {self.status}"


class PlanPreview(models.Model):
    """What the records a plan changes looked like when it was submitted (the pre-images), read
    by a worker through the portal's limiter. `steps` maps a step name to
    `{"entity", "read", "key", "before"}` or `{"entity", "read", "key", "error"}`."""

    plan = models.OneToOneField("plans.Plan", on_delete=models.CASCADE, primary_key=True, related_name="preview")
    steps = models.JSONField(default=dict)
    read_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"preview of {self.plan_id}"
