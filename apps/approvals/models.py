"""Approvals: callback deliveries, record previews, approvers' notices and their settings."""

import uuid

from django.conf import settings
from django.db import models


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
    changed = models.JSONField(
        null=True, blank=True,
        help_text="Set when the worker found a record changed after approval: {step: {field: [was, now]}}")
    changed_at = models.DateTimeField(null=True, blank=True)
    revert_plan = models.ForeignKey("plans.Plan", null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="reverts")

    def __str__(self):
        return f"preview of {self.plan_id}"


class ApproverBitrixUser(models.Model):
    """An approver's Bitrix24 user id on one portal: they also get a Bitrix24 notification there."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="bitrix_ids")
    portal = models.ForeignKey("portals.Portal", on_delete=models.CASCADE, related_name="approver_bitrix_ids")
    bitrix_user_id = models.PositiveIntegerField()

    class Meta:
        verbose_name = "approver's Bitrix24 user"
        constraints = [models.UniqueConstraint(fields=["user", "portal"], name="approver_bitrix_user_once")]

    def __str__(self):
        return f"{self.user} is Bitrix24 user {self.bitrix_user_id} on {self.portal}"


class PortalEscalation(models.Model):
    """Who hears about a plan on this portal that is still undecided at 80 % of its lifetime."""

    portal = models.OneToOneField("portals.Portal", on_delete=models.CASCADE, related_name="escalation")
    fallback_group = models.ForeignKey("auth.Group", on_delete=models.PROTECT,
                                       help_text="Fallback approvers: every active member gets the escalation.")

    def __str__(self):
        return f"escalation for {self.portal}"


class NoticeKind(models.TextChoices):
    PENDING = "pending", "A plan waits for a decision"
    REMINDER = "reminder", "Reminder at half the plan's lifetime"
    ESCALATION = "escalation", "Escalation at 80 % of the plan's lifetime"


class NoticeChannel(models.TextChoices):
    EMAIL = "email", "Email"
    BITRIX = "bitrix", "Bitrix24 notification"


class NoticeStatus(models.TextChoices):
    QUEUED = "queued", "Queued (waiting for the next digest)"
    SENDING = "sending", "Sending (a digest took it)"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class Notice(models.Model):
    """One thing one person is told about one plan, on one channel. Email notices of one person
    are sent at most once a minute: what arrives meanwhile goes out together as a digest. A
    portal's Bitrix24 notices go out as one message per person, up to 50 people a request."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notices")
    plan = models.ForeignKey("plans.Plan", on_delete=models.CASCADE, related_name="notices")
    kind = models.CharField(max_length=16, choices=NoticeKind.choices)
    channel = models.CharField(max_length=16, choices=NoticeChannel.choices)
    status = models.CharField(max_length=16, choices=NoticeStatus.choices, default=NoticeStatus.QUEUED)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True,
                                   help_text="When it went out; while it is sending, when its digest took it.")
    round = models.PositiveSmallIntegerField(
        default=0, help_text="How many times the plan had gone back to its approvers (a record changed after "
                             "it was approved) when this was told: each time they are told again.")

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["user", "plan", "kind", "channel", "round"],
                                               name="notice_once_a_round")]
        indexes = [models.Index(fields=["user", "channel", "status"]),
                   # the beat's look for emails whose flush was lost (`notify.notify_lost`)
                   models.Index(fields=["created_at"], condition=models.Q(status="queued"), name="notice_queued"),
                   # the beat's look for Bitrix24 notices a dead digest left sending (`notify.notify_lost`)
                   models.Index(fields=["sent_at"], condition=models.Q(status="sending"), name="notice_sending")]

    def __str__(self):
        return f"{self.get_kind_display()} to {self.user} by {self.channel}: {self.status}"


class Mailbox(models.Model):
    """When a person last got an email from us: the row locked while a digest is assembled."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mailbox")
    last_sent_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"mailbox of {self.user}"


class EmailWake(models.Model):
    """One row per person with email notices to send: `requested_at` is set while their flush
    (`tasks.flush_email`) is queued or waits out the minute between emails, so a burst of notice
    runs queues one flush per person, not one each (`apps.core.wake`; see `notify._flush_emails`)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True,
                                related_name="+")
    requested_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"email wake of user {self.user_id}"


class BitrixWake(models.Model):
    """One row per portal with Bitrix24 notices to send: `requested_at` is set while its digest
    (`tasks.flush_bitrix_notices`) is queued or waits for the portal's limiter, so a burst of
    notice runs queues one digest per portal, not one task per notice (`apps.core.wake`; see
    `notify._flush_bitrix`)."""

    portal = models.OneToOneField("portals.Portal", on_delete=models.CASCADE, primary_key=True, related_name="+")
    requested_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"Bitrix24 notice wake of portal {self.portal_id}"


class NoticeWake(models.Model):
    """One row per portal whose plans wait for approvers: `requested_at` is set while a notice run
    (`tasks.notify_portal_pending`) is queued and has not started, so a busy portal's submissions
    queue one run, not one task each (`apps.core.wake`; see `notify.notify_wake`)."""

    portal = models.OneToOneField("portals.Portal", on_delete=models.CASCADE, primary_key=True, related_name="+")
    requested_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"notice wake of portal {self.portal_id}"
