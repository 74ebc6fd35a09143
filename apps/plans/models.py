import uuid

from django.conf import settings
from django.db import models

from .choices import ApprovalDecision, AttemptOutcome, PlanStatus, Risk


class Plan(models.Model):
    """One REST call or a chain of steps an agent asked for. `status` is written only by
    `apps.plans.states` (house rule 2)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey("agents.Agent", on_delete=models.PROTECT, related_name="plans")
    portal = models.ForeignKey("portals.Portal", on_delete=models.PROTECT, related_name="plans")
    status = models.CharField(max_length=32, choices=PlanStatus.choices, default=PlanStatus.SUBMITTED)
    risk = models.CharField(max_length=16, choices=Risk.choices)
    steps = models.JSONField(help_text="[{name, method, params}] exactly as they will be sent")
    reason = models.TextField(blank=True)
    callback_url = models.URLField(max_length=500, blank=True)
    content_hash = models.CharField(max_length=64)
    approvals_required = models.PositiveSmallIntegerField(default=0)
    packs = models.JSONField(default=list, help_text="The granted packs that allowed each step")
    policy_reasons = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempt_count = models.PositiveIntegerField(default=0)
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    approvers_told_at = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="When its approvers were told it waits (apps.approvals.notify); empty while they are to be")

    class Meta:
        ordering = ["-created_at"]
        permissions = [("approve_plan", "Can approve or reject plans")]
        indexes = [models.Index(fields=["agent", "-created_at"]), models.Index(fields=["status"]),
                   # what the approvers' notice runs look for (`apps.approvals.notify`): few rows at any time
                   models.Index(fields=["portal", "created_at"], name="plan_unannounced",
                                condition=models.Q(status="pending_approval", approvers_told_at__isnull=True))]

    def __str__(self):
        return f"plan {self.id} ({self.status})"

    @property
    def methods(self) -> list[str]:
        return [step["method"] for step in self.steps]


class LiveApprovals(models.Manager):
    """Decisions that still count: an approval dismissed because the record changed after it was
    given (the plan went back to its approvers) counts nowhere, `plan.approvals` included."""

    def get_queryset(self):
        return super().get_queryset().filter(dismissed_at__isnull=True)


class AllApprovals(models.Manager):
    """Every decision ever given, dismissed ones included (history pages)."""


class Approval(models.Model):
    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="approvals")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="approvals")
    decision = models.CharField(max_length=16, choices=ApprovalDecision.choices)
    comment = models.TextField(blank=True)
    content_hash = models.CharField(max_length=64, help_text="The plan content this decision saw")
    created_at = models.DateTimeField(auto_now_add=True)
    dismissed_at = models.DateTimeField(null=True, blank=True,
                                        help_text="Set when the record changed after this decision")

    objects = LiveApprovals()
    history = AllApprovals()

    class Meta:
        ordering = ["created_at"]
        base_manager_name = "history"
        constraints = [models.UniqueConstraint(fields=["plan", "user"], condition=models.Q(dismissed_at__isnull=True),
                                               name="approval_one_live_per_user")]

    def __str__(self):
        verb = "approved" if self.decision == ApprovalDecision.APPROVE else "rejected"
        return f"{self.user} {verb} {self.plan_id}"


class ExecutionAttempt(models.Model):
    """Recorded before the portal is called (house rule 6): an attempt left `open` means the
    call may have reached Bitrix24 and nobody saw the answer."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="attempts")
    number = models.PositiveIntegerField()
    outcome = models.CharField(max_length=16, choices=AttemptOutcome.choices, default=AttemptOutcome.OPEN)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    detail = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["plan", "number"]
        constraints = [models.UniqueConstraint(fields=["plan", "number"], name="attempt_unique_number")]

    def __str__(self):
        return f"attempt {self.number} of {self.plan_id}: {self.outcome}"


class IdempotencyRecord(models.Model):
    """One row per (agent, key): the first request to insert it owns the key."""

    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="idempotency_records")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    plan = models.ForeignKey(Plan, null=True, blank=True, on_delete=models.CASCADE)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["agent", "key"], name="idempotency_unique_key")]

    def __str__(self):
        return f"idempotency key of {self.agent_id}"


class PendingPlan(Plan):
    """The approvers' inbox in the admin: plans waiting for a decision."""

    class Meta:
        proxy = True
        verbose_name = "pending plan"
        verbose_name_plural = "pending plans"
