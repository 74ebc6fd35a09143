"""Event services: the only writers of inbound events, event settings and dead letters.

- `inbound_receive`: one online delivery (the hook view's one call): authenticate it against the
  portal's stored `application_token` (constant time), store it once per natural key, and once
  it is committed wake the portal's processing (`events_wake`: one queued run per portal, not one
  task per event). Nothing is stored for a delivery that does not authenticate.
- `events_process_pending`: a portal's processing run, every stored online event in order.
- `event_store` / `event_process`: store a parsed (offline) event; process it once (status under
  a row lock; handler failures counted, dead-lettered after `EVENTS_MAX_ATTEMPTS`), giving it its
  feed sequence number under the `FeedHead` lock.
- `event_settings_update`, `dead_letter_replay`, `portal_app_uninstalled`: audited in the same
  transaction (house rule 3).

Receiving an event writes no audit entry: the `InboundEvent` row is itself the append-only
record, and the handler must answer within milliseconds. Every state change an admin or the
portal's lifecycle causes (settings, bindings, dead letters, replays, offline batches,
uninstall) is audited.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from apps.audit import registry as audit_events
from apps.audit.services import audit_record
from apps.core import sql, wakeup
from apps.core.exceptions import ApplicationError, InvalidRequest, NotFound, Unauthenticated
from apps.core.wake import WakeFlag
from apps.plans.choices import PlanStatus
from apps.plans.models import Plan
from apps.plans.states import StaleState, transition
from apps.portals import crypto
from apps.portals.models import AuthMode, Credential, CredentialStatus, Portal
from apps.portals.services import credential_set_status

from .choices import OPEN_STATES, EventSource, EventStatus
from .models import EventSettings, FeedHead, InboundEvent, ProcessingWake
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


def _credential_sql(where: str) -> str:
    """The lookup by a constant condition (`where`: one of the two below); the table names are the
    models', every value is a parameter."""
    credential, portal = Credential._meta.db_table, Portal._meta.db_table
    return (f"SELECT c.application_token, p.id, p.member_id FROM {credential} c "  # noqa: S608  # nosec B608
            f"JOIN {portal} p ON p.id = c.portal_id WHERE p.is_active AND {where} ORDER BY c.id LIMIT 1")


_CREDENTIAL_BY_MEMBER_ID = _credential_sql("p.member_id = %s")
_CREDENTIAL_BY_SLUG = _credential_sql("p.slug = %s")


def _credential_for(*, slug: str | None, member_id: str) -> tuple[str, int, str] | None:
    """(application_token, portal id, portal member_id) of the active portal a delivery names, or
    None. One statement on the hook's hot path instead of the ORM; the ciphertext is read from the
    row every time and only its decryption is cached (`crypto.decrypt_cached`), so a rotated,
    revoked or changed token is seen at once."""
    if slug is None and not member_id:
        return None
    if slug is not None:
        row = sql.fetchone(_CREDENTIAL_BY_SLUG, [slug])
    else:
        row = sql.fetchone(_CREDENTIAL_BY_MEMBER_ID, [member_id])
    if row is None:
        return None
    ciphertext, portal_id, portal_member_id = row
    return (crypto.decrypt_cached(ciphertext) if ciphertext else ""), portal_id, portal_member_id


def authenticate_delivery(*, delivery: Delivery, slug: str | None = None) -> int:
    """The id of the portal a delivery belongs to, or Unauthenticated. The portal is found by
    `auth[member_id]` (app events) or by the per-portal handler URL (outgoing webhooks, `slug`);
    `auth[application_token]` must equal the stored one (constant time). With a per-portal URL a
    `member_id` that is not the portal's is refused too."""
    found = _credential_for(slug=slug, member_id=delivery.member_id)
    stored = found[0] if found else ""
    given = delivery.application_token or ""
    matches = constant_time_compare(stored or _DUMMY_TOKEN, given)
    if found is None or not stored or not given or not matches:
        raise Unauthenticated("The event's application_token does not match a registered portal.")
    _, portal_id, portal_member_id = found
    if slug is not None and portal_member_id and delivery.member_id and delivery.member_id != portal_member_id:
        raise Unauthenticated("The event's member_id is not this portal's.")
    return portal_id


def event_store(*, portal: Portal, event: str, ts: int, data: dict, payload_hash: str,
                source: str = EventSource.OFFLINE, additional: dict | None = None, event_handler_id: str = "",
                offline_id: str = "", message_id: str = "", process_id: str = "") -> tuple[InboundEvent, bool]:
    """Store an event once per (portal, event, payload hash, ts). Returns (event, created). The
    offline drain's path: it processes what it stored itself (online deliveries go through
    `online_event_store`)."""
    def insert() -> InboundEvent:
        return InboundEvent.objects.create(
            portal=portal, event=event, ts=ts, payload_hash=payload_hash, data=data, source=source,
            additional=additional or {}, event_handler_id=event_handler_id, offline_id=offline_id,
            message_id=message_id, process_id=process_id,
        )

    try:
        if transaction.get_connection().in_atomic_block:
            with transaction.atomic():  # a savepoint: a duplicate must not break the caller's transaction
                stored = insert()
        else:
            stored = insert()  # one INSERT is its own transaction (autocommit): no BEGIN/COMMIT round trips
    except IntegrityError:
        existing = InboundEvent.objects.filter(portal=portal, event=event, payload_hash=payload_hash, ts=ts).first()
        if existing is None:  # not the natural key that failed
            raise
        return existing, False
    return stored, True


@dataclass(frozen=True)
class Received:
    """What the hook answers: the stored row's id (None for a duplicate) and whether it is new."""

    event: str
    event_id: int | None
    created: bool


_EVENTS = InboundEvent._meta.db_table
_INSERT_ONLINE = (
    f"INSERT INTO {_EVENTS} (portal_id, event, ts, payload_hash, data, additional, source, "  # noqa: S608  # nosec B608
    "event_handler_id, offline_id, message_id, process_id, status, attempts, last_error, offline_error_marked, "
    "feed_seq, received_at, processed_at) "  # values are parameters; the table name is the model's
    "VALUES (%s, %s, %s, %s, %s, '{}', %s, %s, '', '', '', %s, 0, '', %s, NULL, %s, NULL) "
    "ON CONFLICT (portal_id, event, payload_hash, ts) DO NOTHING RETURNING id")


def online_event_store(*, portal_id: int, delivery: Delivery) -> Received:
    """Store an online delivery once per natural key with one `INSERT ... ON CONFLICT DO NOTHING`
    (its own transaction on the hook's path, autocommit) and, when the row is new, wake the
    portal's processing once it is committed (`events_wake`). A duplicate changes nothing."""
    data = json.dumps(delivery.data, ensure_ascii=False, allow_nan=False)
    params = [portal_id, delivery.event, delivery.ts, delivery.payload_hash, data, EventSource.ONLINE,
              delivery.event_handler_id, EventStatus.RECEIVED, False,
              connection.ops.adapt_datetimefield_value(timezone.now())]
    row = sql.fetchone(_INSERT_ONLINE, params)
    if row is None:
        return Received(event=delivery.event, event_id=None, created=False)
    transaction.on_commit(functools.partial(events_wake, portal_id=portal_id))
    return Received(event=delivery.event, event_id=row[0], created=True)


def inbound_receive(*, delivery: Delivery, flat_form=None, slug: str | None = None,
                    app_client_id: str | None = None) -> Received:
    """One online delivery. ONAPPINSTALL goes through the install flow (its tokens are verified
    with app.info there, since no application_token is stored yet for a new install); every other
    event must authenticate with the stored application_token. `flat_form` (the form's fields,
    or a callable giving them) is read only for ONAPPINSTALL."""
    if delivery.event == INSTALL_EVENT and slug is None:
        from apps.portals.oauth import portal_install_from_callback

        form = flat_form() if callable(flat_form) else flat_form
        try:
            portal = portal_install_from_callback(form=form, app_client_id=app_client_id)
        except ApplicationError as exc:
            raise Unauthenticated(f"The install event could not be verified: {exc.message}") from None
        portal_id = portal.pk
    else:
        portal_id = authenticate_delivery(delivery=delivery, slug=slug)
    return online_event_store(portal_id=portal_id, delivery=delivery)


# --- waking the processing ---------------------------------------------------------------------

#: A wake flag older than this is taken for a lost run (a worker died with its message): the next
#: delivery queues another run. Runs overlapping after that are safe (event_process locks the row).
WAKE_TTL_SECONDS = 60
#: Events one run processes before it hands over to a fresh run (stays well inside the time limit).
PROCESS_RUN_LIMIT = 1000


_WAKE = WakeFlag(ProcessingWake, ttl_seconds=WAKE_TTL_SECONDS)


def events_wake(*, portal_id: int, now: dt.datetime | None = None) -> bool:
    """Queue one processing run for the portal unless one is already queued and not started.
    Called after the event's row is committed. True when a run was queued.

    No wake-up is lost (`apps.core.wake`): a run clears the flag *before* it reads the stored
    events, and this event's row was committed before the flag is looked at."""
    if not _WAKE.request(portal_id, now=now):
        return False
    from .tasks import process_portal_events

    try:
        process_portal_events.delay_on_commit(portal_id)
    except Exception:  # noqa: BLE001 - the event is stored; events_recover_stale re-queues it
        logger.warning("could not queue event processing for portal %s; stale recovery will", portal_id,
                       exc_info=True)
        _WAKE.clear(portal_id)
        return False
    return True


def events_process_pending(*, portal_id: int, limit: int = PROCESS_RUN_LIMIT) -> int:
    """One processing run: every stored online event of the portal that was not processed yet, in
    the order stored. Clears the wake flag first (see `events_wake`). A failed event is retried on
    its own (`process_event`, with back-off) and does not hold up the others. Returns the number of
    events processed (any outcome)."""
    from .tasks import process_event

    _WAKE.clear(portal_id)
    done = 0
    pending = InboundEvent.objects.filter(portal_id=portal_id, source=EventSource.ONLINE,
                                          status=EventStatus.RECEIVED).order_by("pk")
    while done < limit:
        ids = list(pending.values_list("pk", flat=True)[:min(100, limit - done)])
        if not ids:
            return done
        for event_id in ids:
            if event_process(event_id=event_id) == EventStatus.FAILED:
                process_event.apply_async((event_id,), countdown=10)
            done += 1
    events_wake(portal_id=portal_id)  # the budget is spent with events left: hand over to a new run
    return done


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
    """Enqueue online events still open after a while (a worker died with the message or its
    processing run; the safety net behind `events_wake`). Offline events are retried by their
    drain."""
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
