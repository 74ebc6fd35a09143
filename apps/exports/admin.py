"""Exports in the admin, read-only (house rule 10): who asked for what, how far it has got
(rows, estimated total, rate, time left, a progress bar), its plan and its file's fate. The
approval itself happens on the export's plan, in the approvers' usual pages; an approver of the
portal may stop an approved export that is queued or fetching (`services.export_stop`)."""

import json

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from apps.accounts.mfa import mfa_gate
from apps.core.admin import ReadOnlyAdminMixin
from apps.core.exceptions import ApplicationError
from apps.plans.selectors import portals_decidable_by

from .choices import WAITING_STATES, ExportStatus
from .models import Export
from .selectors import export_file_ready, export_progress
from .services import export_stop


def _number(value) -> str:
    return "—" if value is None else f"{value:,}"


def _seconds(value) -> str:
    if value is None:
        return "—"
    value = int(round(value))
    return f"{value // 60} min {value % 60} s" if value >= 60 else f"{value} s"


@admin.register(Export)
class ExportAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("short_id", "method", "agent", "status", "progress_summary", "rows")
    list_filter = ("status", "portal", "format")
    search_fields = ("id", "method", "agent__slug", "portal__slug")
    list_select_related = ("portal", "agent", "plan")
    fields = ("id", "status", "progress_bar", "rows", "rate", "time_left", "requests", "agent", "portal", "plan_link",
              "method", "request", "format", "strategy", "file_state", "created_at", "started_at", "finished_at",
              "expires_at", "error_text")
    readonly_fields = fields
    actions = ["stop_selected"]

    def has_stop_permission(self, request):
        """Offered to the people the service accepts: approvers of some portal (apps.plans.selectors)."""
        return portals_decidable_by(request.user).exists()

    @admin.action(permissions=["stop"], description="Stop selected exports (approved: queued or fetching)")
    def stop_selected(self, request, queryset):
        gate = mfa_gate(request, reverse("admin:exports_export_changelist"))
        if gate:
            return gate
        for export in queryset:
            try:
                stopped = export_stop(export_id=export.pk, user=request.user)
            except ApplicationError as exc:
                self.message_user(request, f"Export {str(export.pk)[:8]}: {exc.message}", messages.ERROR)
                continue
            self.message_user(request, f"Export {str(export.pk)[:8]} stopped after {stopped.rows_written:,} rows; "
                              "its partial file is removed.", messages.SUCCESS)
        return None

    @admin.display(description="export")
    def short_id(self, obj):
        return str(obj.pk)[:8]

    @admin.display(description="progress")
    def progress_bar(self, obj):
        progress = export_progress(obj)
        percent = progress["percent"]
        label = "—" if percent is None else f"{percent:.1f} %"
        return format_html(
            '<span style="white-space:nowrap">'
            '<progress class="export-progress" max="100" value="{}" style="width:7em">{}</progress> '
            '<span class="export-percent">{}</span></span>', "" if percent is None else f"{percent:.1f}", label, label)

    @admin.display(description="progress")
    def progress_summary(self, obj):
        """The bar, and under it what is happening in words: the rate and the time left while
        rows are fetched, else the export's state (the list has little room)."""
        return format_html('{}<br><small class="export-rate">{}</small>', self.progress_bar(obj),
                           self.progress_words(obj))

    def progress_words(self, obj) -> str:
        if obj.status == ExportStatus.RUNNING:
            progress = export_progress(obj)
            if progress["rows_per_second"] is None:
                return "starting"
            if progress["seconds_left"] is None:
                return f"{self.rate(obj)}, total not known"
            return f"{self.rate(obj)} · {self.time_left(obj)} left"
        if obj.status == ExportStatus.SUCCEEDED:
            return f"done in {_seconds(obj.active_seconds)}" if obj.active_seconds else "done"
        return "not started" if obj.status in WAITING_STATES else "stopped"  # the status column says why

    @admin.display(description="rows / estimated")
    def rows(self, obj):
        progress = export_progress(obj)
        return f"{_number(progress['rows_fetched'])} / {_number(progress['estimated_total'])}"

    @admin.display(description="rate")
    def rate(self, obj):
        rate = export_progress(obj)["rows_per_second"]
        return "—" if rate is None else f"{rate:,.0f} rows/s"

    @admin.display(description="time left")
    def time_left(self, obj):
        return _seconds(export_progress(obj)["seconds_left"])

    @admin.display(description="plan")
    def plan_link(self, obj):
        url = reverse("admin:plans_plan_change", args=[obj.plan_id])
        return format_html('<a href="{}">{}</a> ({})', url, obj.plan_id, obj.plan.get_status_display())

    @admin.display(description="request")
    def request(self, obj):
        body = {"select": obj.select, "filter": obj.filter, "order": obj.order}
        return format_html("<pre style='white-space:pre-wrap;margin:0'>{}</pre>",
                           json.dumps(body, indent=2, ensure_ascii=False))

    @admin.display(description="file")
    def file_state(self, obj):
        if obj.file_removed_at:
            return f"removed {obj.file_removed_at:%Y-%m-%d %H:%M} after its retention period"
        if export_file_ready(obj):
            return f"{obj.file_name}, {obj.file_bytes:,} bytes, kept until {obj.expires_at:%Y-%m-%d %H:%M}"
        return f"{obj.file_bytes:,} bytes written so far" if obj.file_bytes else "—"

    @admin.display(description="error")
    def error_text(self, obj):
        if not obj.error:
            return "—"
        return format_html("<pre style='white-space:pre-wrap;margin:0'>{}</pre>",
                           json.dumps(obj.error, indent=2, ensure_ascii=False))
