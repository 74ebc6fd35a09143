from django.contrib import admin

from .models import ApproverBitrixUser, CallbackDelivery, Notice, PortalEscalation


@admin.register(CallbackDelivery)
class CallbackDeliveryAdmin(admin.ModelAdmin):
    """Deliveries are written by the worker only: the admin lists them."""

    list_display = ("plan", "plan_status", "status", "attempts", "last_http_status", "last_error", "created_at",
                    "delivered_at")
    list_filter = ("status", "plan_status")
    search_fields = ("plan__id", "url")
    readonly_fields = [f.name for f in CallbackDelivery._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Notice)
class NoticeAdmin(admin.ModelAdmin):
    """What approvers were told, and what failed to reach them."""

    list_display = ("created_at", "user", "plan", "kind", "channel", "status", "error", "sent_at")
    list_filter = ("status", "channel", "kind")
    search_fields = ("user__username", "plan__id")
    readonly_fields = [f.name for f in Notice._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ApproverBitrixUser)
class ApproverBitrixUserAdmin(admin.ModelAdmin):
    list_display = ("user", "portal", "bitrix_user_id")
    list_filter = ("portal",)


@admin.register(PortalEscalation)
class PortalEscalationAdmin(admin.ModelAdmin):
    list_display = ("portal", "fallback_group")
