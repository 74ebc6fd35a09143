from django.contrib import admin

from .models import CallbackDelivery


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
