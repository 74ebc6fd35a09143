"""Inbound Bitrix24 events, the per-portal event settings and offline-queue state, dead letters.

- `InboundEvent` is stored once per natural key (portal, event, payload hash, ts): a delivery
  repeated by Bitrix24 (or re-fetched from the offline queue) never makes a second row. Its
  `data` is the event's `data` with every token scrubbed; `auth` is never stored.
- `feed_seq` is given when the event is processed, under the `FeedHead` row lock, so the agent
  feed's cursor only ever moves over committed rows (a later commit can never get a lower number).
- `EventSettings` is the per-portal row (one-to-one to Portal): the offline-queue switch, the
  `auth_connector`, the reserved batch's `process_id` and the drain lease.
- `DeadLetter` is a proxy of `InboundEvent` with status `dead`: the admin's dead-letter list.
"""

from django.db import models

from apps.core.models import TimeStampedModel
from apps.portals.crypto import EncryptedTextField

from .choices import EventSource, EventStatus


class EventSettings(TimeStampedModel):
    portal = models.OneToOneField("portals.Portal", on_delete=models.CASCADE, related_name="event_settings")
    offline_events = models.BooleanField(
        default=False, help_text="Drain this portal's offline event queue (event.offline.get) from beat.")
    auth_connector = models.CharField(
        max_length=64, blank=True,
        help_text="Source key passed to event.bind/event.offline.* so our own writes do not echo back.")
    process_id = models.CharField(
        max_length=128, blank=True, editable=False,
        help_text="The offline batch reserved with clear=0 and not yet settled (re-fetched after a crash).")
    reserved_at = models.DateTimeField(null=True, blank=True, editable=False)
    lease_until = models.DateTimeField(null=True, blank=True, editable=False)
    last_drain_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.CharField(max_length=500, blank=True, editable=False)

    class Meta:
        verbose_name = "event settings"
        verbose_name_plural = "event settings"
        ordering = ["portal__slug"]

    def __str__(self):
        return f"events of {self.portal}"


class InboundEvent(models.Model):
    portal = models.ForeignKey("portals.Portal", on_delete=models.CASCADE, related_name="inbound_events")
    event = models.CharField(max_length=100)
    ts = models.BigIntegerField(default=0, help_text="The event's Unix time (0 when it carried none)")
    payload_hash = models.CharField(max_length=64)
    data = models.JSONField(default=dict, blank=True)
    additional = models.JSONField(default=dict, blank=True, help_text="EVENT_ADDITIONAL of an offline record")
    source = models.CharField(max_length=16, choices=EventSource.choices, default=EventSource.ONLINE)
    event_handler_id = models.CharField(max_length=32, blank=True)
    offline_id = models.CharField(max_length=32, blank=True)
    message_id = models.CharField(max_length=64, blank=True)
    process_id = models.CharField(max_length=128, blank=True)
    status = models.CharField(max_length=16, choices=EventStatus.choices, default=EventStatus.RECEIVED)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    offline_error_marked = models.BooleanField(default=False, help_text="event.offline.error was called for it")
    feed_seq = models.BigIntegerField(null=True, blank=True, unique=True)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["portal", "event", "payload_hash", "ts"], name="inboundevent_natural_key"),
        ]
        indexes = [models.Index(fields=["status", "received_at"], name="inboundevent_status_idx")]

    def __str__(self):
        return f"{self.event} #{self.pk} ({self.portal_id})"


class DeadLetter(InboundEvent):
    class Meta:
        proxy = True
        verbose_name = "dead letter"
        verbose_name_plural = "dead letters"


class FeedHead(models.Model):
    """One row: the last feed sequence number given out."""

    seq = models.BigIntegerField(default=0)

    def __str__(self):
        return f"feed head at {self.seq}"


class EventSubscription(TimeStampedModel):
    """An agent's standing request: POST matching events to its callback, signed with HMAC-SHA256
    under `secret` (shown to the agent once). Visibility is the feed's: only events the agent's
    packs may read, on portals it holds grants on."""

    agent = models.ForeignKey("agents.Agent", on_delete=models.CASCADE, related_name="event_subscriptions")
    portal = models.ForeignKey("portals.Portal", null=True, blank=True, on_delete=models.CASCADE,
                               help_text="Empty: every portal the agent holds a grant on")
    types = models.CharField(max_length=2000, blank=True, help_text="Comma-separated event codes; empty: all")
    callback_url = models.URLField(max_length=500)
    secret = EncryptedTextField()
    is_active = models.BooleanField(default=True)
    last_delivery_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.CharField(max_length=500, blank=True, editable=False)

    class Meta:
        ordering = ["agent", "id"]

    def __str__(self):
        return f"subscription {self.pk} of {self.agent}"

    def type_set(self) -> frozenset[str]:
        return frozenset(t.strip().upper() for t in self.types.split(",") if t.strip())


class ProcessingWake(models.Model):
    """One row per portal that received online events: `requested_at` is set when a processing
    run (`tasks.process_portal_events`) was queued and has not started yet, so a busy portal's
    deliveries queue one run, not one task each. The run clears it before it reads (see
    `services.events_wake`); a flag older than `WAKE_TTL_SECONDS` counts as cleared (a lost run)."""

    portal = models.OneToOneField("portals.Portal", on_delete=models.CASCADE, primary_key=True, related_name="+")
    requested_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"processing wake of portal {self.portal_id}"
