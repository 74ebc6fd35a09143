"""Admin for the sandbox portals: the fault switch and limits are edited here (saved through
`sandbox_set_fault`); records, queues and handlers are shown read-only."""

from django import forms
from django.contrib import admin, messages

from apps.core.admin import ReadOnlyAdminMixin
from apps.core.exceptions import ApplicationError

from .models import FAULT_ERROR_CHOICES, SandboxEventHandler, SandboxOfflineEvent, SandboxPortal
from .services import sandbox_set_fault


class FaultForm(forms.ModelForm):
    fault_error = forms.ChoiceField(choices=FAULT_ERROR_CHOICES, required=False)

    class Meta:
        model = SandboxPortal
        fields = ["fault_error", "fault_error_remaining", "moved_to", "require_https"]

    def clean(self):
        data = super().clean()
        if data.get("fault_error") and data.get("fault_error_remaining") in (None, 0):
            self.add_error("fault_error_remaining", "A positive number of calls, or -1 for every call.")
        if (data.get("fault_error_remaining") or 0) < -1:
            self.add_error("fault_error_remaining", "A positive number of calls, or -1 for every call.")
        if data.get("fault_error") == "MOVED" and not data.get("moved_to"):
            self.add_error("moved_to", "The MOVED fault needs the portal's new address.")
        return data


@admin.register(SandboxPortal)
class SandboxPortalAdmin(admin.ModelAdmin):
    form = FaultForm
    list_display = ["slug", "member_id", "fault_error", "fault_error_remaining", "require_https", "requests_total"]
    search_fields = ["slug", "member_id"]
    fieldsets = [
        ("Fault switch", {"fields": ["fault_error", "fault_error_remaining", "moved_to", "require_https"],
                          "description": "fault_error_remaining: -1 answers every call until switched off."}),
        ("Portal", {"fields": ["slug", "member_id", "rate", "burst", "operating_limit", "requests_total",
                               "query_limit_refusals", "operation_limit_refusals", "faults_injected"]}),
    ]
    readonly_fields = ["slug", "member_id", "rate", "burst", "operating_limit", "requests_total",
                       "query_limit_refusals", "operation_limit_refusals", "faults_injected"]

    def has_add_permission(self, request):
        return False  # portals are made by sandbox_portal_ensure (seed_demo, tests)

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        try:
            sandbox_set_fault(portal=obj, error=data["fault_error"] or "",
                              calls=data["fault_error_remaining"] if data["fault_error"] else -1,
                              moved_to=data["moved_to"] or "", require_https=data["require_https"])
        except ApplicationError as exc:
            messages.error(request, str(exc))


@admin.register(SandboxEventHandler)
class SandboxEventHandlerAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["portal", "event", "handler", "offline", "auth_type", "client_id"]
    list_filter = ["offline", "event"]


@admin.register(SandboxOfflineEvent)
class SandboxOfflineEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["portal", "event_name", "message_id", "process_id", "error", "timestamp"]
    list_filter = ["error", "event_name"]
