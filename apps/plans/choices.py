from django.db import models


class PlanStatus(models.TextChoices):
    """Codes for the API, words for people."""

    SUBMITTED = "submitted", "Submitted"
    PENDING_APPROVAL = "pending_approval", "Waiting for approval"
    APPROVED = "approved", "Approved, about to run"
    EXECUTING = "executing", "Running on the portal"
    SUCCEEDED = "succeeded", "Done"
    FAILED = "failed", "Failed"
    NEEDS_RECONCILIATION = "needs_reconciliation", "Outcome unknown: check the portal"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired undecided"
    CANCELLED = "cancelled", "Cancelled by the agent"


TERMINAL_STATES = frozenset(
    {PlanStatus.SUCCEEDED, PlanStatus.FAILED, PlanStatus.REJECTED, PlanStatus.EXPIRED, PlanStatus.CANCELLED}
)
# States an agent's long-poll waits through; needs_reconciliation waits for a human, so it ends a wait.
FINAL_FOR_WAIT = TERMINAL_STATES | {PlanStatus.NEEDS_RECONCILIATION}


class Risk(models.TextChoices):
    READ = "read", "Read"
    WRITE = "write", "Write"
    DESTRUCTIVE = "destructive", "Destructive"


class ApprovalDecision(models.TextChoices):
    APPROVE = "approve"
    REJECT = "reject"


class AttemptOutcome(models.TextChoices):
    OPEN = "open", "Sent, no answer recorded yet"
    ANSWERED = "answered", "The portal answered"
    NOT_SENT = "not_sent", "Refused before running (safe to retry)"
    UNKNOWN = "unknown", "May have reached the portal"
