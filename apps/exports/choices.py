from django.db import models


class ExportStatus(models.TextChoices):
    """Codes for the API, words for people."""

    PENDING_APPROVAL = "pending_approval", "Waiting for approval"
    QUEUED = "queued", "Approved, about to run"
    RUNNING = "running", "Fetching rows"
    SUCCEEDED = "succeeded", "Done: file ready"
    FAILED = "failed", "Failed"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired undecided"
    CANCELLED = "cancelled", "Cancelled"


TERMINAL_STATES = frozenset(
    {ExportStatus.SUCCEEDED, ExportStatus.FAILED, ExportStatus.REJECTED, ExportStatus.EXPIRED, ExportStatus.CANCELLED}
)
WAITING_STATES = frozenset({ExportStatus.PENDING_APPROVAL, ExportStatus.QUEUED})


class ExportFormat(models.TextChoices):
    JSONL = "jsonl", "JSON lines"
    CSV = "csv", "CSV"


class Strategy(models.TextChoices):
    """How the rows are paged (FACTS §3, §4)."""

    ID_CHAIN = "id_chain", "ID-ordered pages chained inside batch ($result references, start=-1)"
    OFFSETS = "offsets", "Page offsets, 50 pages per batch"
