from django.db import models


class PlanStatus(models.TextChoices):
    SUBMITTED = "submitted"
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    EXECUTING = "executing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    NEEDS_RECONCILIATION = "needs_reconciliation"
    REJECTED = "rejected"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


TERMINAL_STATES = frozenset(
    {PlanStatus.SUCCEEDED, PlanStatus.FAILED, PlanStatus.REJECTED, PlanStatus.EXPIRED, PlanStatus.CANCELLED}
)
# States an agent's long-poll waits through; needs_reconciliation waits for a human, so it ends a wait.
FINAL_FOR_WAIT = TERMINAL_STATES | {PlanStatus.NEEDS_RECONCILIATION}


class Risk(models.TextChoices):
    READ = "read"
    WRITE = "write"
    DESTRUCTIVE = "destructive"


class ApprovalDecision(models.TextChoices):
    APPROVE = "approve"
    REJECT = "reject"


class AttemptOutcome(models.TextChoices):
    OPEN = "open", "Sent, no answer recorded yet"
    ANSWERED = "answered", "The portal answered"
    NOT_SENT = "not_sent", "Refused before running (safe to retry)"
    UNKNOWN = "unknown", "May have reached the portal"
