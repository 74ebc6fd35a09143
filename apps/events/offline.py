"""The offline-queue worker for one portal (FACTS §11), called by the `drain_offline_queue` task.

One batch:

1. `event.offline.get` with `clear=0` (and `auth_connector`): the portal reserves the batch under
   a `process_id`, which is saved and committed **before** anything is processed. If a batch is
   already reserved (a worker died between get and clear), it is re-fetched with that
   `process_id` instead of reserving a new one.
2. Each record is stored once (natural key; a re-fetched record finds its row) and processed
   inline once (`services.event_process`, which does nothing for an event already processed).
3. `event.offline.clear` for exactly the records stored and processed; `event.offline.error` for
   those whose processing failed `EVENTS_MAX_ATTEMPTS` times (they are dead letters now).
   Records that failed fewer times stay reserved and are re-fetched by the next run.
4. When nothing of the batch is left pending, the saved `process_id` is dropped.

So a worker killed anywhere loses nothing (the batch stays reserved and is re-fetched) and
duplicates nothing (the store is keyed, processing happens once). One drain per portal runs at a
time: a lease on the settings row (`EVENTS_DRAIN_LEASE_SECONDS`, longer than the task time
limit), taken and given back with conditional UPDATEs. Calls go through the transport
(`apps.bitrix.client`: the portal's registered address, its limiter, token refresh); a limiter
deferral ends the run quietly and the next beat continues.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.audit import registry as audit_events
from apps.audit.services import audit_record
from apps.bitrix.client import BitrixClient
from apps.bitrix.errors import BitrixError, NotSent, PortalError
from apps.portals.models import Portal

from .choices import OPEN_STATES, EventSource, EventStatus
from .models import EventSettings, InboundEvent
from .parsing import parse_offline_record
from .services import OfflineEventsUnavailable, event_process, event_store, require_app_admin_credential

logger = logging.getLogger(__name__)


@dataclass
class DrainResult:
    portal: str
    status: str = "ok"  # ok | skipped | busy | deferred | error
    batches: int = 0
    fetched: int = 0
    stored: int = 0
    cleared: int = 0
    dead: int = 0
    pending: int = 0
    error: str = ""
    detail: dict = field(default_factory=dict)


# --- the lease -------------------------------------------------------------------------------


def _lease_take(settings_id: int) -> bool:
    now = timezone.now()
    until = now + dt.timedelta(seconds=settings.EVENTS_DRAIN_LEASE_SECONDS)
    return bool(EventSettings.objects.filter(pk=settings_id).filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now)).update(lease_until=until))


def _note(settings_id: int, **fields) -> None:
    EventSettings.objects.filter(pk=settings_id).update(**fields)


# --- one batch -------------------------------------------------------------------------------


def _explain(exc: BitrixError) -> str:
    if isinstance(exc, PortalError) and exc.code in ("ACCESS_DENIED", "WRONG_AUTH_TYPE"):
        return (f"The portal refused {exc.method or 'event.offline.*'} ({exc.code}): these methods need app auth "
                "and the app's user must be a portal administrator.")
    return f"{exc.code}: {exc.description}"[:500]


def _drain_batch(client: BitrixClient, row: EventSettings, result: DrainResult) -> bool:
    """Fetch, store, process and settle one batch. Returns True if another batch may follow."""
    portal = client.portal
    reserved = row.process_id
    params: dict = {"clear": 0, "limit": settings.EVENTS_OFFLINE_BATCH}
    if row.auth_connector:
        params["auth_connector"] = row.auth_connector
    if reserved:
        params["process_id"] = reserved
    answer = client.call("event.offline.get", params).result
    answer = answer if isinstance(answer, dict) else {}
    records = answer.get("events") if isinstance(answer.get("events"), list) else []
    if not records:
        if reserved:  # the reserved batch was settled (or expired): start a fresh one
            _note(row.pk, process_id="", reserved_at=None)
            row.process_id = ""
            return True
        return False
    process_id = reserved or str(answer.get("process_id") or "")
    if not process_id:
        raise OfflineEventsUnavailable("event.offline.get with clear=0 answered without a process_id.")
    if not reserved:
        # Saved and committed before processing: a worker killed after this re-fetches the batch.
        _note(row.pk, process_id=process_id, reserved_at=timezone.now())
        row.process_id = process_id
    result.batches += 1
    result.fetched += len(records)

    to_clear: list[str] = []
    to_error: list[InboundEvent] = []
    pending = 0
    for raw in records:
        record = parse_offline_record(raw)
        event, created = event_store(
            portal=portal, event=record.event, ts=record.ts, data=record.data, payload_hash=record.payload_hash,
            source=EventSource.OFFLINE, additional=record.additional, offline_id=record.offline_id,
            message_id=record.message_id, process_id=process_id,
        )
        result.stored += int(created)
        status = event.status
        if status in OPEN_STATES:
            status = event_process(event_id=event.pk)
        if status == EventStatus.PROCESSED:
            if record.offline_id:
                to_clear.append(record.offline_id)
        elif status == EventStatus.DEAD:
            if record.message_id and not event.offline_error_marked:
                to_error.append(event)
        else:
            pending += 1

    if to_clear:
        client.call("event.offline.clear", {"process_id": process_id, "id": to_clear})
        result.cleared += len(to_clear)
    if to_error:
        client.call("event.offline.error", {"process_id": process_id,
                                             "message_id": [e.message_id for e in to_error]})
        InboundEvent.objects.filter(pk__in=[e.pk for e in to_error]).update(offline_error_marked=True)
        result.dead += len(to_error)
    result.pending += pending
    with transaction.atomic():
        if not pending:
            EventSettings.objects.filter(pk=row.pk).update(process_id="", reserved_at=None)
            row.process_id = ""
        audit_record(action=audit_events.EVENTS_OFFLINE_BATCH, portal=portal, data={
            "process_id": process_id, "fetched": len(records), "cleared": len(to_clear),
            "error_marked": len(to_error), "pending": pending, "refetched": bool(reserved)})
    return not pending


def offline_drain(*, portal_id: int, max_batches: int | None = None) -> DrainResult:
    portal = Portal.objects.filter(pk=portal_id).first()
    result = DrainResult(portal=portal.slug if portal else str(portal_id))
    row = EventSettings.objects.filter(portal_id=portal_id).first()
    if portal is None or not portal.is_active or row is None or not row.offline_events:
        result.status = "skipped"
        return result
    if not _lease_take(row.pk):
        result.status = "busy"
        return result
    try:
        require_app_admin_credential(portal)
        client = BitrixClient(portal)
        for _ in range(max_batches or settings.EVENTS_OFFLINE_MAX_BATCHES):
            if not _drain_batch(client, row, result):
                break
    except NotSent as exc:  # our limiter or the portal's: the next beat continues
        result.status, result.error = "deferred", f"{exc.code}: {exc.description}"[:500]
    except OfflineEventsUnavailable as exc:
        result.status, result.error = "error", exc.message
    except BitrixError as exc:
        result.status, result.error = "error", _explain(exc)
    finally:
        _note(row.pk, lease_until=None, last_drain_at=timezone.now(),
              last_error=result.error if result.status == "error" else "")
    if result.status == "error":
        logger.error("offline drain of %s: %s", result.portal, result.error)
    return result
