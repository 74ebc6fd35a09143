"""The two cloud limits (FACTS §5), kept in the database so every web process shares them.

- `bucket_admit`: the per-portal leaky bucket (apps.core.leakybucket.admit) on the portal row,
  updated under `select_for_update` in its own transaction.
- `operating_*`: simulated execution seconds per (portal, caller, method) in one-minute
  buckets; a bucket drops out ten minutes after the first call recorded in it.
"""

import math
from dataclasses import dataclass

from django.db.models import F, Min, Sum

from apps.core.leakybucket import BucketState, admit

from . import clock
from .models import SandboxOperatingBucket, SandboxPortal
from .tx import portal_atomic

WINDOW_SECONDS = 600.0


def bucket_admit(*, portal: SandboxPortal) -> bool:
    """Count one request against the portal's bucket; False if the portal refuses it."""
    with portal_atomic():
        row = SandboxPortal.objects.select_for_update().get(pk=portal.pk)
        now = clock.now()
        admitted, state = admit(
            BucketState(row.bucket_level, row.bucket_updated_at), now, rate=row.rate, burst=row.burst
        )
        updates = {"bucket_level": state.level, "bucket_updated_at": state.updated_at,
                   "requests_total": F("requests_total") + 1}
        if not admitted:
            updates["query_limit_refusals"] = F("query_limit_refusals") + 1
        SandboxPortal.objects.filter(pk=row.pk).update(**updates)
    return admitted


@dataclass(frozen=True)
class Operating:
    seconds: float
    reset_at: float | None


def _live(portal: SandboxPortal, caller: str, method: str, now: float):
    return SandboxOperatingBucket.objects.filter(
        portal=portal, caller=caller, method=method, first_at__gt=now - WINDOW_SECONDS
    )


def operating_state(*, portal: SandboxPortal, caller: str, method: str) -> Operating:
    now = clock.now()
    agg = _live(portal, caller, method, now).aggregate(total=Sum("seconds"), oldest=Min("first_at"))
    oldest = agg["oldest"]
    return Operating(float(agg["total"] or 0.0), (oldest + WINDOW_SECONDS) if oldest is not None else None)


def operating_blocked(*, portal: SandboxPortal, caller: str, method: str) -> tuple[bool, Operating]:
    """The check made before each call: refused once the sum is over the limit."""
    state = operating_state(portal=portal, caller=caller, method=method)
    return state.seconds > portal.operating_limit, state


def operating_cost(*, portal: SandboxPortal, method: str) -> float:
    costs = portal.method_costs if isinstance(portal.method_costs, dict) else {}
    try:
        cost = float(costs.get(method, portal.default_cost))
    except (TypeError, ValueError):
        cost = portal.default_cost
    return max(0.0, cost) if math.isfinite(cost) else portal.default_cost


def operating_reset(*, portal: SandboxPortal) -> None:
    SandboxOperatingBucket.objects.filter(portal=portal).delete()
