from django.contrib import admin
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from apps.core.admin import ReadOnlyAdminMixin

from .models import ApproverBitrixUser, CallbackDelivery, Notice, PortalEscalation


@admin.register(CallbackDelivery)
class CallbackDeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Deliveries are written by the worker only: the admin lists them."""

    list_display = ("plan", "plan_status", "status", "attempts", "last_http_status", "last_error", "created_at",
                    "delivered_at")
    list_filter = ("status", "plan_status")
    search_fields = ("plan__id", "url")
    readonly_fields = [f.name for f in CallbackDelivery._meta.fields]


@admin.register(Notice)
class NoticeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """What approvers were told, and what failed to reach them."""

    # short values in the list (the filters name them in full; a notice's page shows when it was
    # sent), so it fits a laptop's window beside the admin's sidebars
    list_display = ("created", "user", "plan_ref", "kind_value", "round", "channel_value", "status_value", "error")
    list_filter = ("status", "channel", "kind")
    list_select_related = ("user",)
    search_fields = ("user__username", "plan__id")
    readonly_fields = [f.name for f in Notice._meta.fields]

    @admin.display(description="created", ordering="created_at")
    def created(self, notice):
        return timezone.localtime(notice.created_at).strftime("%b %d, %H:%M:%S")

    @admin.display(description="plan", ordering="plan")
    def plan_ref(self, notice):
        """The plan's short id, linked to its page (the whole id and status made the list scroll)."""
        return format_html('<a href="{}">{}</a>', reverse("admin:plans_plan_change", args=[notice.plan_id]),
                           str(notice.plan_id)[:8])

    @admin.display(description="kind", ordering="kind")
    def kind_value(self, notice):
        return notice.kind

    @admin.display(description="channel", ordering="channel")
    def channel_value(self, notice):
        return notice.channel

    @admin.display(description="status", ordering="status")
    def status_value(self, notice):
        return notice.status


@admin.register(ApproverBitrixUser)
class ApproverBitrixUserAdmin(admin.ModelAdmin):
    list_display = ("user", "portal", "bitrix_user_id")
    list_filter = ("portal",)


@admin.register(PortalEscalation)
class PortalEscalationAdmin(admin.ModelAdmin):
    list_display = ("portal", "fallback_group")
