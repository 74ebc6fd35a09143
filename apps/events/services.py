"""Event services: the only writers of inbound events, event settings and dead letters.

- `inbound_receive`: one online delivery (the hook view's one call): authenticate it against the
  portal's stored `application_token` (constant time), store it once per natural key, enqueue its
  processing on commit. Nothing is stored for a delivery that does not authenticate.
- `event_store` / `event_process`: store a parsed event; process it once (status under a row
  lock; handler failures counted, dead-lettered after `EVENTS_MAX_ATTEMPTS`), giving it its feed
  sequence number under the `FeedHead` lock.
- `event_settings_update`, `dead_letter_replay`, `portal_app_uninstalled`: audited in the same
  transaction (house rule 3).

Receiving an event writes no audit entry: the `InboundEvent` row is itself the append-only
record, and the handler must answer within milliseconds. Every state change an admin or the
portal's lifecycle causes (settings, bindings, dead letters, replays, offline batches,
uninstall) is audited.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from apps.audit import registry as audit_events
from apps.audit.services import audit_record
from apps.core import wakeup
from apps.core.exceptions import ApplicationError, InvalidRequest, NotFound, Unauthenticated
from apps.plans.choices import PlanStatus
from apps.plans.models import Plan
from apps.plans.states import StaleState, transition
from apps.portals.models import AuthMode, Credential, CredentialStatus, Portal
from apps.portals.services import credential_set_status

from .choices import OPEN_STATES, EventSource, EventStatus
from .models import EventSettings, FeedHead, InboundEvent
from .parsing import Delivery

logger = logging.getLogger(__name__)

INSTALL_EVENT = "ONAPPINSTALL"
UNINSTALL_EVENT = "ONAPPUNINSTALL"
# Compared against when no portal matched, so a miss costs what a hit costs.
_DUMMY_TOKEN = "0" * 32


class OfflineEventsUnavailable(ApplicationError):
    """409: the portal's credential cannot use event.bind / event.offline.* (FACTS §9, §11)."""

    code = "offline_events_unavailable"
    status = 409
    default_message = (
        "event.bind and event.offline.* need an OAuth application credential whose user is a portal "
        "administrator."
    )


def require_app_admin_credential(portal: Portal) -> None:
    """A clear error before calling: an incoming webhook can never use these methods."""
    if portal.auth_mode != AuthMode.OAUTH:
        raise OfflineEventsUnavailable(
            f"Portal {portal.slug} uses an incoming webhook; event.bind and event.offline.* need app auth "
            "(an OAuth application installed by a portal administrator).", portal=portal.slug)


# --- settings --------------------------------------------------------------------------------


def event_settings_get(*, portal: Portal) -> EventSettings:
    row = EventSettings.objects.filter(portal=portal).first()
    if row is None:
        row, _ = EventSettings.objects.get_or_create(portal=portal)
    return row


def event_settings_update(*, portal: Portal, offline_events: bool | None = None, auth_connector: str | None = None,
                          acting_user=None) -> EventSettings:
    if auth_connector is not None:
        auth_connector = auth_connector.strip()
        if len(auth_connector) > 64 or not all(c.isalnum() or c in "_-." for c in auth_connector):
            raise InvalidRequest("auth_connector is up to 64 letters, digits, '_', '-' or '.'.",
                                 field="auth_connector")
    if offline_events:
        require_app_admin_credential(portal)
    event_settings_get(portal=portal)
    with transaction.atomic():
        row = EventSettings.objects.select_for_update().get(portal=portal)
        changed = {}
        if offline_events is not None and row.offline_events != offline_events:
            row.offline_events = changed["offline_events"] = bool(offline_events)
        if auth_connector is not None and row.auth_connector != auth_connector:
            row.auth_connector = changed["auth_connector"] = auth_connector
        if changed:
            row.save()
            audit_record(action=audit_events.EVENTS_SETTINGS_CHANGED, actor=acting_user, portal=portal,
                         data=changed)
    return row


# --- receiving -------------------------------------------------------------------------------


def _credential_for(*, slug: str | None, member_id: str) -> Credential | None:
    qs = Credential.objects.select_related("portal").only(
        "application_token", "status", "portal__id", "portal__slug", "portal__member_id", "portal__is_active",
        "portal__auth_mode", "portal__base_url",
    ).filter(portal__is_active=True)
    if slug is not None:
        return qs.filter(portal__slug=slug).first()
    if not member_id:
        return None
    return qs.filter(portal__member_id=member_id).first()


def authenticate_delivery(*, delivery: Delivery, slug: str | None = None) -> Portal:
    """The portal a delivery belongs to, or Unauthenticated. The portal is found by
    `auth[member_id]` (app events) or by the per-portal handler URL (outgoing webhooks, `slug`);
    `auth[application_token]` must equal the stored one (constant time). With a per-portal URL a
    `member_id` that is not the portal's is refused too."""
    credential = _credential_for(slug=slug, member_id=delivery.member_id)
    stored = (credential.application_token or "") if credential else ""
    given = delivery.application_token or ""
    matches = constant_time_compare(stored or _DUMMY_TOKEN, given)
    if credential is None or not stored or not given or not matches:
        raise Unauthenticated("The event's application_token does not match a registered portal.")
    portal = credential.portal
    if slug is not None and portal.member_id and delivery.member_id and delivery.member_id != portal.member_id:
        raise Unauthenticated("The event's member_id is not this portal's.")
    return portal


def event_store(*, portal: Portal, event: str, ts: int, data: dict, payload_hash: str,
                source: str = EventSource.ONLINE, additional: dict | None = None, event_handler_id: str = "",
                offline_id: str = "", message_id: str = "", process_id: str = "",
                enqueue: bool = True) -> tuple[InboundEvent, bool]:
    """Store an event once per (portal, event, payload hash, ts). Returns (event, created). A new
    online event's processing is enqueued on commit."""
    def insert() -> InboundEvent:
        row = InboundEvent.objects.create(
            portal=portal, event=event, ts=ts, payload_hash=payload_hash, data=data, source=source,
            additional=additional or {}, event_handler_id=event_handler_id, offline_id=offline_id,
            message_id=message_id, process_id=process_id,
        )
        if enqueue:
            from .tasks import process_event

            process_event.delay_on_commit(row.pk)
        return row

    try:
        if transaction.get_connection().in_atomic_block:
            with transaction.atomic():  # a savepoint: a duplicate must not break the caller's transaction
                stored = insert()
        else:
            # The hook's path: one INSERT is its own transaction (autocommit), so receiving costs two
            # round trips (the portal's SELECT and this) instead of four; the task is queued once the
            # row is durable, exactly as on commit.
            stored = insert()
    except IntegrityError:
        existing = InboundEvent.objects.filter(portal=portal, event=event, payload_hash=payload_hash, ts=ts).first()
        if existing is None:  # not the natural key that failed
            raise
        return existing, False
    return stored, True


def inbound_receive(*, delivery: Delivery, flat_form: dict, slug: str | None = None,
                    app_client_id: str | None = None) -> tuple[InboundEvent, bool]:
    """One online delivery. ONAPPINSTALL goes through the install flow (its tokens are verified
    with app.info there, since no application_token is stored yet for a new install); every other
    event must authenticate with the stored application_token."""
    if delivery.event == INSTALL_EVENT and slug is None:
        from apps.portals.oauth import portal_install_from_callback

        try:
            portal = portal_install_from_callback(form=flat_form, app_client_id=app_client_id)
        except ApplicationError as exc:
            raise Unauthenticated(f"The install event could not be verified: {exc.message}") from None
    else:
        portal = authenticate_delivery(delivery=delivery, slug=slug)
    return event_store(
        portal=portal, event=delivery.event, ts=delivery.ts, data=delivery.data, payload_hash=delivery.payload_hash,
        source=EventSource.ONLINE, event_handler_id=delivery.event_handler_id,
    )


# --- processing ------------------------------------------------------------------------------


def max_attempts() -> int:
    return max(1, int(settings.EVENTS_MAX_ATTEMPTS))


def _next_feed_seq() -> int:
    head = FeedHead.objects.select_for_update().filter(pk=1).first()
    if head is None:
        FeedHead.objects.get_or_create(pk=1)
        head = FeedHead.objects.select_for_update().get(pk=1)
    head.seq += 1
    head.save(update_fields=["seq"])
    return head.seq


def event_process(*, event_id: int) -> str:
    """Process one stored event at most once. Returns its status afterwards: `processed`,
    `failed` (retry later), `dead` (the K-th failure: a dead letter) or the status it already had."""
    from . import handlers

    with transaction.atomic():
        event = InboundEvent.objects.select_for_update().select_related("portal").filter(pk=event_id).first()
        if event is None:
            return "missing"
        if event.status not in OPEN_STATES:
            return event.status
        event.attempts += 1
        try:
            with transaction.atomic():
                handlers.handle(event)
        except Exception as exc:  # noqa: BLE001 - any handler failure is counted, never lost
            event.last_error = f"{type(exc).__name__}: {exc}"[:2000]
            if event.attempts >= max_attempts():
                event.status = EventStatus.DEAD
                audit_record(action=audit_events.EVENTS_DEAD_LETTERED, portal=event.portal, data={
                    "event_id": event.pk, "event": event.event, "source": event.source,
                    "attempts": event.attempts, "error": event.last_error[:300]})
            else:
                event.status = EventStatus.FAILED
            event.save(update_fields=["attempts", "last_error", "status"])
            logger.warning("event %s (%s) failed attempt %s: %s", event.pk, event.event, event.attempts,
                           event.last_error[:200])
            return event.status
        event.status = EventStatus.PROCESSED
        event.processed_at = timezone.now()
        event.feed_seq = _next_feed_seq()
        event.save(update_fields=["attempts", "status", "processed_at", "feed_seq"])
        wakeup.notify_on_commit(wakeup.events_key(event.portal_id))  # answers the feed's `wait=` after commit
        from .subscriptions import fan_out

        fan_out(event)
        return event.status


def events_recover_stale(*, older_than_seconds: int | None = None) -> int:
    """Enqueue online events still open after a while (a worker died with the message). Offline
    events are retried by their drain."""
    from .tasks import process_event

    age = older_than_seconds if older_than_seconds is not None else settings.EVENTS_STALE_SECONDS
    cutoff = timezone.now() - dt.timedelta(seconds=age)
    ids = list(InboundEvent.objects.filter(
        status__in=OPEN_STATES, source=EventSource.ONLINE, received_at__lte=cutoff,
    ).values_list("pk", flat=True)[:500])
    for event_id in ids:
        process_event.delay(event_id)
    return len(ids)


def events_purge_old(*, now=None) -> int:
    """Delete processed events older than EVENTS_RETENTION_DAYS (dead letters stay until replayed).
    The feed's cursor is a sequence number, so agents' cursors stay valid."""
    days = int(settings.EVENTS_RETENTION_DAYS)
    if days <= 0:
        return 0
    cutoff = (now or timezone.now()) - dt.timedelta(days=days)
    with transaction.atomic():
        deleted, _ = InboundEvent.objects.filter(status=EventStatus.PROCESSED, received_at__lt=cutoff).delete()
        if deleted:
            audit_record(action=audit_events.EVENTS_PURGED, data={"deleted": deleted, "retention_days": days})
    return deleted


def dead_letter_replay(*, event_id: int, acting_user=None) -> InboundEvent:
    """Give a dead letter a fresh set of attempts and process it again (on commit)."""
    from .tasks import process_event

    with transaction.atomic():
        event = InboundEvent.objects.select_for_update().select_related("portal").filter(pk=event_id).first()
        if event is None:
            raise NotFound("No such event.")
        if event.status != EventStatus.DEAD:
            raise StaleState(f"The event is {event.status}, not a dead letter.", status=event.status)
        previous_error = event.last_error
        event.status, event.attempts = EventStatus.RECEIVED, 0
        event.save(update_fields=["status", "attempts"])
        audit_record(action=audit_events.EVENTS_REPLAYED, actor=acting_user, portal=event.portal, data={
            "event_id": event.pk, "event": event.event, "previous_error": previous_error[:300]})
        process_event.delay_on_commit(event.pk)
    return event


# --- app lifecycle ---------------------------------------------------------------------------


CANCELLABLE = (PlanStatus.PENDING_APPROVAL, PlanStatus.APPROVED)


def portal_app_uninstalled(*, portal: Portal, event_id: int | None = None, acting_user=None) -> int:
    """ONAPPUNINSTALL: the credential is revoked, the portal deactivated, and its plans that have
    not started executing are cancelled through the plan state machine. Returns plans cancelled."""
    cancelled = 0
    with transaction.atomic():
        locked = Portal.objects.select_for_update().get(pk=portal.pk)
        credential_set_status(portal=locked, status=CredentialStatus.REVOKED,
                              detail="The app was uninstalled from the portal (ONAPPUNINSTALL).",
                              code=UNINSTALL_EVENT, acting_user=acting_user)
        was_active = locked.is_active
        if was_active:
            locked.is_active = False
            locked.save(update_fields=["is_active", "updated_at"])
        due = Plan.objects.filter(portal=locked, status__in=CANCELLABLE).values_list("pk", "status")
        for plan_id, status in due:
            plan = Plan.objects.select_for_update().select_related("portal").filter(pk=plan_id).first()
            if plan is None or plan.status != status:
                continue
            transition(plan=plan, source=status, target=PlanStatus.CANCELLED, actor=acting_user,
                       data={"reason": "app uninstalled from the portal"})
            cancelled += 1
        EventSettings.objects.filter(portal=locked).update(offline_events=False, process_id="")
        audit_record(action=audit_events.EVENTS_APP_UNINSTALLED, actor=acting_user, portal=locked, data={
            "event_id": event_id, "was_active": was_active, "plans_cancelled": cancelled})
    return cancelled
