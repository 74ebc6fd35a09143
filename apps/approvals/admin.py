from django.contrib import admin

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

    list_display = ("created_at", "user", "plan", "kind", "round", "channel", "status", "error", "sent_at")
    list_filter = ("status", "channel", "kind")
    search_fields = ("user__username", "plan__id")
    readonly_fields = [f.name for f in Notice._meta.fields]


@admin.register(ApproverBitrixUser)
class ApproverBitrixUserAdmin(admin.ModelAdmin):
    list_display = ("user", "portal", "bitrix_user_id")
    list_filter = ("portal",)


@admin.register(PortalEscalation)
class PortalEscalationAdmin(admin.ModelAdmin):
    list_display = ("portal", "fallback_group")
