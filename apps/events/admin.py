"""Events in the admin: per-portal settings (with the handler URLs ready to paste and the
portal's bindings), inbound events (read-only), dead letters with replay one / replay all.
Every change goes through a service (apps.events.services / bindings), which audits it."""

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from apps.bitrix.errors import BitrixError
from apps.core.admin import ReadOnlyAdminMixin
from apps.core.exceptions import ApplicationError

from . import bindings, services
from .choices import EventStatus
from .models import DeadLetter, EventSettings, EventSubscription, InboundEvent


def _pretty(value) -> str:
    return format_html("<pre style='white-space:pre-wrap;margin:0'>{}</pre>",
                       json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True))


class EventSettingsForm(forms.ModelForm):
    class Meta:
        model = EventSettings
        fields = ("portal", "offline_events", "auth_connector")

    def clean(self):
        cleaned = super().clean()
        portal = cleaned.get("portal") or getattr(self.instance, "portal", None)
        if portal is not None and cleaned.get("offline_events"):
            try:
                services.require_app_admin_credential(portal)
            except ApplicationError as exc:
                raise forms.ValidationError(exc.message) from None
        return cleaned


class BindForm(forms.Form):
    event = forms.RegexField(regex=r"^[A-Za-z0-9_]{1,100}$", max_length=100, help_text="e.g. ONCRMLEADADD")
    offline = forms.BooleanField(required=False, help_text="Queue on the portal (event_type=offline, no handler)")


@admin.register(EventSettings)
class EventSettingsAdmin(admin.ModelAdmin):
    form = EventSettingsForm
    list_display = ("portal", "offline_events", "auth_connector", "process_id", "last_drain_at", "last_error")
    list_filter = ("offline_events",)
    readonly_fields = ("handler_urls", "process_id", "reserved_at", "last_drain_at", "last_error", "bindings_link")

    def get_readonly_fields(self, request, obj=None):
        return (*self.readonly_fields, "portal") if obj else self.readonly_fields

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        """A thin adapter: the service writes and audits (a new row is created by it too)."""
        row = services.event_settings_update(
            portal=form.cleaned_data.get("portal") or obj.portal,
            offline_events=form.cleaned_data["offline_events"],
            auth_connector=form.cleaned_data["auth_connector"], acting_user=request.user)
        obj.pk = row.pk

    @admin.display(description="handler URL (paste into Bitrix24)")
    def handler_urls(self, obj):
        if obj is None or not obj.pk:
            return "—"
        app_url, webhook_url = bindings.handler_urls(obj.portal)
        return format_html(
            "<div>App events (event.bind): <input readonly size=70 value='{}' onclick='this.select()'></div>"
            "<div>Outgoing webhooks of this portal: <input readonly size=70 value='{}' onclick='this.select()'></div>",
            app_url, webhook_url)

    @admin.display(description="bindings")
    def bindings_link(self, obj):
        if obj is None or not obj.pk:
            return "—"
        return format_html("<a href='{}'>List, bind and unbind handlers on the portal</a>",
                           reverse("admin:events_eventsettings_bindings", args=[obj.pk]))

    def get_urls(self):
        return [
            path("<int:settings_id>/bindings/", self.admin_site.admin_view(self.bindings_view),
                 name="events_eventsettings_bindings"),
        ] + super().get_urls()

    def bindings_view(self, request, settings_id):
        row = get_object_or_404(EventSettings.objects.select_related("portal"), pk=settings_id)
        if not self.has_change_permission(request, row):
            raise DjangoPermissionDenied
        portal = row.portal
        form = BindForm(request.POST if request.POST.get("do") == "bind" else None)
        if request.method == "POST":
            try:
                if request.POST.get("do") == "bind" and form.is_valid():
                    bindings.binding_add(portal=portal, event=form.cleaned_data["event"],
                                         offline=form.cleaned_data["offline"], acting_user=request.user)
                    self.message_user(request, f"Bound {form.cleaned_data['event'].upper()}.", messages.SUCCESS)
                    return redirect(request.path)
                if request.POST.get("do") == "unbind":
                    removed = bindings.binding_remove(
                        portal=portal, event=request.POST.get("event", ""), handler=request.POST.get("handler", ""),
                        offline=request.POST.get("offline") == "1", auth_type=request.POST.get("auth_type", ""),
                        acting_user=request.user)
                    self.message_user(request, f"Unbound ({removed} handler(s) removed).", messages.SUCCESS)
                    return redirect(request.path)
            except (ApplicationError, BitrixError) as exc:
                self.message_user(request, getattr(exc, "message", None) or str(exc), messages.ERROR)
        listed, error = [], ""
        try:
            listed = bindings.bindings_list(portal=portal)
        except (ApplicationError, BitrixError) as exc:
            error = getattr(exc, "message", None) or str(exc)
        app_url, webhook_url = bindings.handler_urls(portal)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Event handlers on {portal.slug}",
            "opts": self.model._meta,
            "original": row,
            "portal": portal,
            "bindings": listed,
            "error": error,
            "form": form,
            "app_url": app_url,
            "webhook_url": webhook_url,
        }
        return TemplateResponse(request, "admin/events/bindings.html", context)


@admin.register(InboundEvent)
class InboundEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "portal", "event", "source", "status", "attempts", "ts", "received_at", "feed_seq")
    list_filter = ("status", "source", "portal", "event")
    search_fields = ("event", "message_id", "offline_id")
    date_hierarchy = "received_at"
    fields = ("portal", "event", "source", "status", "attempts", "ts", "payload_hash", "data_pretty",
              "additional", "event_handler_id", "offline_id", "message_id", "process_id", "offline_error_marked",
              "last_error", "feed_seq", "received_at", "processed_at")
    readonly_fields = fields

    @admin.display(description="data")
    def data_pretty(self, obj):
        return _pretty(obj.data)


@admin.register(DeadLetter)
class DeadLetterAdmin(InboundEventAdmin):
    list_display = ("id", "portal", "event", "source", "attempts", "last_error", "offline_error_marked", "received_at")
    list_filter = ("source", "portal", "event")
    actions = ["replay_selected"]
    change_list_template = "admin/events/deadletter/change_list.html"

    def get_queryset(self, request):
        return super().get_queryset(request).filter(status=EventStatus.DEAD)

    def has_replay_permission(self, request):
        return request.user.has_perm("events.change_deadletter")

    def _replay(self, request, ids):
        done = 0
        for event_id in ids:
            try:
                services.dead_letter_replay(event_id=event_id, acting_user=request.user)
                done += 1
            except ApplicationError as exc:
                self.message_user(request, f"Event {event_id}: {exc.message}", messages.ERROR)
        self.message_user(request, f"{done} dead letter(s) queued for processing again.", messages.SUCCESS)

    @admin.action(permissions=["replay"], description="Replay selected dead letters")
    def replay_selected(self, request, queryset):
        self._replay(request, list(queryset.values_list("pk", flat=True)))

    def get_urls(self):
        return [
            path("replay-all/", self.admin_site.admin_view(self.replay_all_view), name="events_deadletter_replay_all"),
        ] + super().get_urls()

    def replay_all_view(self, request):
        if request.method != "POST" or not self.has_replay_permission(request):
            raise DjangoPermissionDenied
        self._replay(request, list(self.get_queryset(request).values_list("pk", flat=True)))
        return redirect(reverse("admin:events_deadletter_changelist"))


@admin.register(EventSubscription)
class EventSubscriptionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Agents manage their subscriptions through the API; the secret is never shown here."""

    list_display = ("id", "agent", "portal", "types", "callback_url", "is_active", "last_delivery_at", "last_error")
    list_filter = ("is_active", "portal")
    fields = ("agent", "portal", "types", "callback_url", "is_active", "created_at", "last_delivery_at", "last_error")
    readonly_fields = fields
