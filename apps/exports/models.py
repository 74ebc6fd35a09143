import uuid

from django.db import models

from .choices import ExportFormat, ExportStatus, Strategy


class Export(models.Model):
    """A long list export an agent asked for. The export owns the plan its request became (one
    step: the list call as sent), so grants, policy, approvals and audit are the plans' own; rows
    are fetched once that plan has run. `status` and the progress columns are written only by
    `apps.exports.services`; the progress is saved after every batch, with the file's length, so
    a restarted worker goes on from `last_id` (or `next_offset`) without duplicates or gaps."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    agent = models.ForeignKey("agents.Agent", on_delete=models.PROTECT, related_name="exports")
    portal = models.ForeignKey("portals.Portal", on_delete=models.PROTECT, related_name="exports")
    plan = models.OneToOneField("plans.Plan", on_delete=models.PROTECT, related_name="export")
    method = models.CharField(max_length=128)
    select = models.JSONField(default=list)
    filter = models.JSONField(default=dict)
    order = models.JSONField(default=dict)
    format = models.CharField(max_length=8, choices=ExportFormat.choices, default=ExportFormat.JSONL)
    status = models.CharField(max_length=24, choices=ExportStatus.choices, default=ExportStatus.PENDING_APPROVAL)
    strategy = models.CharField(max_length=16, choices=Strategy.choices, blank=True)
    id_descending = models.BooleanField(default=False)
    columns = models.JSONField(default=list, blank=True, help_text="CSV columns, fixed by the first rows")
    drop_id = models.BooleanField(default=False, help_text="ID was added to the select for paging only")
    # progress, saved after every batch
    rows_written = models.BigIntegerField(default=0)
    total_estimate = models.BigIntegerField(null=True, blank=True)
    last_id = models.BigIntegerField(null=True, blank=True)
    next_offset = models.BigIntegerField(default=0)
    file_bytes = models.BigIntegerField(default=0)
    requests = models.PositiveIntegerField(default=0)
    active_seconds = models.FloatField(default=0.0, help_text="Time spent fetching (waits for retries excluded)")
    # lease: the worker that runs it now
    lease = models.CharField(max_length=36, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    retries = models.PositiveIntegerField(default=0)
    error = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="The file is removed after this")
    file_removed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["agent", "-created_at"]), models.Index(fields=["status"])]

    def __str__(self):
        return f"export {self.id} of {self.method} ({self.status})"

    @property
    def file_name(self) -> str:
        return f"{self.id}.{self.format}"
