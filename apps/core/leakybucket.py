"""Leaky-bucket arithmetic, as Bitrix24 documents it (FACTS.md §5): each request adds 1 to a
counter that drains by `rate` per second; above `burst` requests are refused.

Pure functions over (level, updated_at): the sandbox portal uses them to refuse like a real
portal, the client limiter (apps.bitrix.limiter) to stay under the same bucket. Callers keep the
state in a database row and update it under a row lock.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class BucketState:
    level: float
    updated_at: float


def drained(state: BucketState, now: float, rate: float) -> float:
    """The counter at `now` after draining since `state.updated_at` (never below zero)."""
    elapsed = max(0.0, now - state.updated_at)
    return max(0.0, state.level - elapsed * rate)


def admit(
    state: BucketState, now: float, *, rate: float, burst: float, cost: float = 1.0
) -> tuple[bool, BucketState]:
    """Server side: admit the request if the counter stays within `burst`. A refused request
    leaves the counter as it was (drained to `now`)."""
    level = drained(state, now, rate)
    if level + cost > burst:
        return False, BucketState(level, now)
    return True, BucketState(level + cost, now)


def reserve(
    state: BucketState, now: float, *, rate: float, burst: float, cost: float = 1.0
) -> tuple[float, BucketState]:
    """Client side: reserve a slot and say how long to wait before sending. The counter may
    run ahead of `burst` by the reserved slots; each waits until the drain makes room."""
    level = drained(state, now, rate)
    wait = max(0.0, (level + cost - burst) / rate) if rate > 0 else 0.0
    return wait, BucketState(level + cost, now)


def release(state: BucketState, now: float, *, rate: float, cost: float = 1.0) -> BucketState:
    """Give a reserved slot back (the call was not sent after all)."""
    return BucketState(max(0.0, drained(state, now, rate) - cost), now)
