"""Idempotency keys for plan submission (IETF Idempotency-Key draft semantics, per agent),
used by `services.plan_submit` and purged by the `purge_idempotency_keys` task.

The first request to insert the (agent, key) row owns the key; the row commits at once, so a
concurrent request with the same key sees it: still without a plan → 409
`idempotency_in_progress`; with a plan → the same plan (200), or 422 if the body differs. A
failed submission deletes its row (failures are not stored). Keys live IDEMPOTENCY_KEY_TTL; an
expired row, or one whose owner died before finishing, is taken over.
"""

import datetime
import re
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core.exceptions import IdempotencyInProgress, IdempotencyMismatch, InvalidRequest

from .models import IdempotencyRecord, Plan

_KEY = re.compile(r"^[\x20-\x7e]{1,255}$")
ABANDONED_AFTER = datetime.timedelta(minutes=5)


def validate_key(key) -> str:
    if not isinstance(key, str) or not _KEY.match(key):
        raise InvalidRequest("An idempotency key is 1–255 printable ASCII characters.", field="idempotency_key")
    return key


@dataclass
class Claim:
    record: IdempotencyRecord | None
    replay: Plan | None = None


def claim(*, agent, key: str, request_hash: str) -> Claim:
    """Own the key (Claim.record set) or get the plan an earlier identical request made
    (Claim.replay set). Raises 409/422 as the module docstring says."""
    now = timezone.now()
    try:
        if transaction.get_connection().in_atomic_block:
            with transaction.atomic():  # a savepoint, so a duplicate key leaves the caller's transaction usable
                record = IdempotencyRecord.objects.create(agent=agent, key=key, request_hash=request_hash)
        else:  # autocommit: the INSERT commits at once, and a duplicate key fails alone
            record = IdempotencyRecord.objects.create(agent=agent, key=key, request_hash=request_hash)
        return Claim(record=record)
    except IntegrityError:
        pass
    record = IdempotencyRecord.objects.filter(agent=agent, key=key).select_related("plan").first()
    if record is None:  # deleted by a failing owner in between: try once more
        return claim(agent=agent, key=key, request_hash=request_hash)
    expired = record.created_at <= now - datetime.timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL)
    abandoned = record.plan_id is None and record.created_at <= now - ABANDONED_AFTER
    if expired or abandoned:
        taken = IdempotencyRecord.objects.filter(pk=record.pk, created_at=record.created_at).update(
            request_hash=request_hash, plan=None, created_at=now)
        if taken:
            record.refresh_from_db()
            return Claim(record=record)
        raise IdempotencyInProgress()
    if record.request_hash != request_hash:
        raise IdempotencyMismatch()
    if record.plan_id is None:
        raise IdempotencyInProgress()
    return Claim(record=None, replay=record.plan)


def bind(record: IdempotencyRecord, plan: Plan) -> None:
    """Called inside the submitting transaction: the plan and the key commit together."""
    IdempotencyRecord.objects.filter(pk=record.pk).update(plan=plan)


def release(record: IdempotencyRecord) -> None:
    IdempotencyRecord.objects.filter(pk=record.pk, plan__isnull=True).delete()


def purge_expired(*, now=None) -> int:
    now = now or timezone.now()
    cutoff = now - datetime.timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL)
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lte=cutoff).delete()
    return deleted
