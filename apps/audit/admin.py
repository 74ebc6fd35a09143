"""The audit log in the admin: read-only entries, and an export page (and actions) that call the
export service and stream the file with the checkpoint that covers the range."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import StreamingHttpResponse
from django.template.response import TemplateResponse
from django.urls import path

from apps.core.admin import ReadOnlyAdminMixin
from apps.core.exceptions import ApplicationError

from .models import AuditEntry
from .services import audit_chains, audit_export_lines, audit_export_prepare

CONTENT_TYPES = {"jsonl": "application/x-ndjson; charset=utf-8", "csv": "text/csv; charset=utf-8"}


class ExportForm(forms.Form):
    chain = forms.ChoiceField(choices=())
    start = forms.IntegerField(label="From entry", min_value=1, initial=1)
    stop = forms.IntegerField(label="To entry", min_value=1, required=False,
                              help_text="Empty: the chain's last entry.")
    format = forms.ChoiceField(choices=[("jsonl", "JSONL"), ("csv", "CSV")], initial="jsonl")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["chain"].choices = [(c, c) for c in audit_chains()]


def _download(plan) -> StreamingHttpResponse:
    response = StreamingHttpResponse(audit_export_lines(plan), content_type=CONTENT_TYPES[plan.fmt])
    name = f"audit-{plan.chain.replace(':', '-')}-{plan.start}-{plan.stop}.{plan.fmt}"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Append-only: entries can be read and exported, never added, edited or deleted here."""

    list_display = ("chain", "seq", "created_at", "action", "actor_type", "actor", "plan_id", "key_id")
    list_filter = ("chain", "action", "actor_type")
    search_fields = ("actor", "portal", "plan_id")
    readonly_fields = ("chain", "seq", "created_at", "action", "actor_type", "actor", "portal", "plan_id", "data",
                       "prev_hash", "hash", "key_id")
    actions = ["export_jsonl", "export_csv"]

    def get_urls(self):
        info = self.model._meta.app_label, self.model._meta.model_name
        return [
            path("export/", self.admin_site.admin_view(self.export_view), name="{}_{}_export".format(*info)),
        ] + super().get_urls()

    def export_view(self, request):
        if not self.has_view_permission(request):
            raise DjangoPermissionDenied
        form = ExportForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                plan = audit_export_prepare(chain=data["chain"], start=data["start"], stop=data["stop"],
                                            fmt=data["format"], actor=request.user)
            except ApplicationError as exc:
                form.add_error(None, exc.message)
            else:
                return _download(plan)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form,
                   "title": "Export an audit range"}
        return TemplateResponse(request, "admin/audit/auditentry/export.html", context)

    def _export_selected(self, request, queryset, fmt):
        chains = set(queryset.values_list("chain", flat=True))
        if len(chains) != 1:
            self.message_user(request, "Select entries of one chain to export their range.", messages.ERROR)
            return None
        seqs = list(queryset.values_list("seq", flat=True))
        try:
            plan = audit_export_prepare(chain=chains.pop(), start=min(seqs), stop=max(seqs), fmt=fmt,
                                        actor=request.user)
        except ApplicationError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return None
        return _download(plan)

    @admin.action(description="Export the selected range (JSONL, with its checkpoint)", permissions=["view"])
    def export_jsonl(self, request, queryset):
        return self._export_selected(request, queryset, "jsonl")

    @admin.action(description="Export the selected range (CSV, with its checkpoint)", permissions=["view"])
    def export_csv(self, request, queryset):
        return self._export_selected(request, queryset, "csv")
