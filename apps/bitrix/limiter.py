"""One leaky bucket per portal, shared by every worker process (FACTS §5).

The state (`level`, `updated_at`) lives in a `PortalLimiter` row and changes only under
`select_for_update` in a short transaction (on SQLite the project opens transactions with
BEGIN IMMEDIATE, which serialises them the same way). The arithmetic is `apps.core.leakybucket`.

`limiter_acquire` reserves one slot before each HTTP request (a batch is one request):
- no wait: send at once;
- a short wait (<= `BITRIX_LIMITER_MAX_SLEEP`, default 2.5 s): sleep in the worker, then send;
- a longer wait: the reservation is not kept and `Deferred(retry_after=wait)` is raised, so the
  task retries with a countdown instead of holding a worker.

Because every request is sent no earlier than its reserved time, the model's counter is never
below the portal's, so the portal never sees more than the bucket holds. We keep a safety
margin (`BITRIX_LIMITER_MARGIN`, default 1 request) below the portal's burst.

Operating-time holds (OPERATION_TIME_LIMIT, FACTS §5) live here too: `MethodBlock` rows hold a
method on a portal until its `operating_reset_at`. Each process remembers the last reset time a
successful answer reported for a method (`operating_time_seen`), because the refusal itself may
not carry one; without either, a method is held for `DEFAULT_OPERATING_WINDOW`.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from apps.core.leakybucket import BucketState, drained, release, reserve

from .errors import Deferred, HeldUntilReset
from .models import MethodBlock, PortalLimiter

LIMITER_CODE = "LOCAL_RATE_LIMIT"
#: When the portal does not say when the operating time resets, hold the method this long:
#: the oldest of the ten one-minute buckets has dropped out by then (FACTS §5).
DEFAULT_OPERATING_WINDOW = 600.0


def max_sleep() -> float:
    return float(settings.BITRIX_LIMITER_MAX_SLEEP)


def margin() -> float:
    return float(settings.BITRIX_LIMITER_MARGIN)


def _effective_burst(burst: float) -> float:
    return max(1.0, float(burst) - margin())


def _ensure_row(portal_id: int) -> None:
    # Outside the locking transaction: get_or_create copes with two processes creating at once.
    PortalLimiter.objects.get_or_create(portal_id=portal_id, defaults={"level": 0.0, "updated_at": time.time()})


def limiter_reserve(*, portal_id: int, rate: float, burst: float, limit: float | None = None) -> float:
    """Reserve a slot and return the wait before sending. If the wait would exceed `limit`,
    nothing is kept and Deferred(retry_after=wait) is raised."""
    if _reserve_at_once(portal_id=portal_id, rate=float(rate), burst=_effective_burst(burst)):
        return 0.0
    with transaction.atomic():
        row = PortalLimiter.objects.select_for_update().filter(pk=portal_id).first()
        if row is None:  # the portal's first request (get_or_create copes with a concurrent creator)
            _ensure_row(portal_id)
            row = PortalLimiter.objects.select_for_update().get(pk=portal_id)
        now = time.time()
        wait, state = reserve(
            BucketState(row.level, row.updated_at), now, rate=float(rate), burst=_effective_burst(burst)
        )
        if limit is not None and wait > limit:
            # Leave the row as it was: the reservation is released before it ever existed.
            deferred = True
        else:
            deferred = False
            row.level, row.updated_at = state.level, state.updated_at
            row.save(update_fields=["level", "updated_at"])
    if deferred:
        raise Deferred(
            LIMITER_CODE,
            f"The portal's request budget is used up for the next {wait:.1f} s; retry later.",
            retry_after=wait,
        )
    return wait


def _reserve_at_once(*, portal_id: int, rate: float, burst: float) -> bool:
    """The common case in one statement: when the bucket has room now (no wait), take the slot
    with a conditional UPDATE that drains and adds 1 in the database (`leakybucket.reserve`'s
    arithmetic for a zero wait; the row lock the UPDATE takes serialises it like the locked
    path). False when there is no room (or no row yet): the caller takes the locked path."""
    now = time.time()
    level = Greatest(F("level") - Greatest(Value(now) - F("updated_at"), Value(0.0)) * Value(rate), Value(0.0))
    # `now` was read before the row lock: another process may have moved the row past it since.
    # The clock never goes back (that would drain the same interval twice and let too much through).
    changed = (PortalLimiter.objects.filter(pk=portal_id).alias(drained=level)
               .filter(drained__lte=Value(burst - 1.0))
               .update(level=level + Value(1.0), updated_at=Greatest(F("updated_at"), Value(now))))
    return bool(changed)


def limiter_acquire(
    *, portal_id: int, rate: float, burst: float, sleep: Callable[[float], None] | None = None
) -> float:
    """Reserve a slot and wait for it (short waits only). Returns the time slept."""
    wait = limiter_reserve(portal_id=portal_id, rate=rate, burst=burst, limit=max_sleep())
    if wait > 0:
        (sleep or time.sleep)(wait)
    return wait


def limiter_release(*, portal_id: int, rate: float) -> None:
    """Give a slot back: the request was reserved but never reached the portal."""
    _ensure_row(portal_id)
    with transaction.atomic():
        row = PortalLimiter.objects.select_for_update().get(pk=portal_id)
        state = release(BucketState(row.level, row.updated_at), time.time(), rate=float(rate))
        row.level, row.updated_at = state.level, state.updated_at
        row.save(update_fields=["level", "updated_at"])


def limiter_saturate(*, portal_id: int, rate: float, burst: float) -> None:
    """The portal answered QUERY_LIMIT_EXCEEDED: its bucket is fuller than we thought (another
    client behind the same IP, a restart). Treat ours as full from now on."""
    _ensure_row(portal_id)
    with transaction.atomic():
        row = PortalLimiter.objects.select_for_update().get(pk=portal_id)
        now = time.time()
        level = max(drained(BucketState(row.level, row.updated_at), now, float(rate)), float(burst))
        row.level, row.updated_at = level, now
        row.save(update_fields=["level", "updated_at"])


def limiter_level(*, portal_id: int, rate: float) -> float:
    """The model's counter now (tests, diagnostics)."""
    row = PortalLimiter.objects.filter(pk=portal_id).first()
    if row is None:
        return 0.0
    return drained(BucketState(row.level, row.updated_at), time.time(), float(rate))


# --- operating-time holds ----------------------------------------------------------------------

#: (portal id, lower-case method) -> the last `operating_reset_at` seen in this process.
_operating_reset: dict[tuple[int, str], float] = {}


def operating_time_seen(*, portal_id: int, method: str, time_info: dict | None) -> None:
    """Remember the reset time an answer's `time` section reports for a method."""
    if not isinstance(time_info, dict):
        return
    reset_at = time_info.get("operating_reset_at")
    try:
        if reset_at is not None:
            _operating_reset[(portal_id, method.lower())] = float(reset_at)
    except (TypeError, ValueError):
        pass


def operating_time_reset_at(*, portal_id: int, method: str, time_info: dict | None) -> float:
    """Unix time until which a method refused with OPERATION_TIME_LIMIT should be held: the
    refusal's reset time, else the last one seen, else DEFAULT_OPERATING_WINDOW from now (never
    more than twice that)."""
    now = time.time()
    candidates = []
    if isinstance(time_info, dict) and time_info.get("operating_reset_at") is not None:
        try:
            candidates.append(float(time_info["operating_reset_at"]))
        except (TypeError, ValueError):
            pass
    if not candidates and (portal_id, method.lower()) in _operating_reset:
        candidates.append(_operating_reset[(portal_id, method.lower())])
    until = max(candidates) if candidates else 0.0
    if until <= now:
        until = now + DEFAULT_OPERATING_WINDOW
    return min(until, now + 2 * DEFAULT_OPERATING_WINDOW)


def method_block_hold(*, portal_id: int, method: str, time_info: dict | None) -> float:
    """Hold `method` on the portal until its operating time resets; returns that Unix time."""
    until = operating_time_reset_at(portal_id=portal_id, method=method, time_info=time_info)
    method_block_set(portal_id=portal_id, method=method.lower(), until=dt.datetime.fromtimestamp(until, tz=dt.UTC))
    return until



def holds_exist() -> Exists:
    """An annotation for a query over plans (or anything with a `portal_id`): is any method held
    on that portal now? Lets the executor skip `methods_held` in the usual case."""
    return Exists(MethodBlock.objects.filter(portal_id=OuterRef("portal_id"), blocked_until__gt=timezone.now()))


def methods_held(*, portal_id: int) -> set[str]:
    """The (lower-case) methods held on the portal now (one query; the executor leaves them out
    of a batch so one held method does not hold back the others)."""
    return set(MethodBlock.objects.filter(portal_id=portal_id, blocked_until__gt=timezone.now())
               .values_list("method", flat=True))


def method_block_check(*, portal_id: int, methods: Iterable[str]) -> None:
    """Raise HeldUntilReset if any of `methods` (normalised names) is held on the portal."""
    names = {m for m in methods if m}
    if not names:
        return
    now = timezone.now()
    blocks = list(
        MethodBlock.objects.filter(portal_id=portal_id, method__in=names, blocked_until__gt=now).order_by(
            "-blocked_until"
        )
    )
    if blocks:
        block = blocks[0]
        wait = (block.blocked_until - now).total_seconds()
        raise HeldUntilReset(
            "OPERATION_TIME_LIMIT",
            f"{block.method} is held on this portal until its operating time resets ({wait:.0f} s).",
            retry_after=max(wait, 0.0),
            method=block.method,
        )


def method_block_set(*, portal_id: int, method: str, until: dt.datetime, code: str = "OPERATION_TIME_LIMIT") -> None:
    """Hold `method` on the portal until `until` (never shortens an existing hold)."""
    with transaction.atomic():
        block, created = MethodBlock.objects.select_for_update().get_or_create(
            portal_id=portal_id, method=method, defaults={"blocked_until": until, "code": code}
        )
        if not created and block.blocked_until < until:
            block.blocked_until = until
            block.code = code
            block.save(update_fields=["blocked_until", "code", "updated_at"])
