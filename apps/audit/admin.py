from django.contrib import admin

from apps.core.admin import ReadOnlyAdminMixin

from .models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Append-only: entries can be read, never added, edited or deleted through the admin."""

    list_display = ("seq", "created_at", "action", "actor_type", "actor", "portal", "plan_id")
    list_filter = ("action", "actor_type", "portal")
    search_fields = ("actor", "portal", "plan_id")
    readonly_fields = ("seq", "created_at", "action", "actor_type", "actor", "portal", "plan_id", "data",
                       "prev_hash", "hash")
