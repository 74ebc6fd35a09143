"""Coalescing wake flags: one queued run per key, however many reasons to run arrive meanwhile.

A flag lives in a table whose primary key is the key (a portal, say) with a nullable
`requested_at`. Whoever stored a reason to run (an inbound event, a plan that waits for its
approvers) calls `request` once that row is committed; True means "queue a run now". A run calls
`clear` *before* it reads what it has to do.

No wake-up is lost: `request` sets the flag with one atomic upsert that succeeds only when it is
clear (or stale), so either it finds the flag clear and its caller queues a run, or a queued run
has not cleared it yet and will read after clearing, when the committed row is visible to it. A
flag older than `ttl` counts as clear: its run was lost.

While a run is queued every request stops at a plain read, which writes nothing: the upsert would
lock the row even when its WHERE fails, which costs a WAL flush and serialises the requests.
"""

from __future__ import annotations

import datetime as dt

from django.db import connection
from django.utils import timezone

from . import sql


def as_aware(value) -> dt.datetime:
    """A datetime read with a raw cursor: aware on PostgreSQL, a naive UTC string or datetime on SQLite."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value if timezone.is_aware(value) else value.replace(tzinfo=dt.UTC)


class WakeFlag:
    def __init__(self, model, *, ttl_seconds: int):
        table, key = model._meta.db_table, model._meta.pk.column
        self.model, self.ttl = model, dt.timedelta(seconds=ttl_seconds)
        # the model's own table and column names; every value is a parameter
        self._read = f"SELECT requested_at FROM {table} WHERE {key} = %s"  # noqa: S608  # nosec B608
        self._set = (  # set only when clear or stale; RETURNING says whether it was set
            f"INSERT INTO {table} ({key}, requested_at) VALUES (%s, %s) ON CONFLICT ({key}) DO UPDATE "  # noqa: S608 # nosec
            f"SET requested_at = excluded.requested_at WHERE {table}.requested_at IS NULL "
            f"OR {table}.requested_at < %s RETURNING {key}")

    def request(self, key, *, now: dt.datetime | None = None) -> bool:
        """Set the flag unless a run is queued and not started: True when the caller must queue one."""
        now = now or timezone.now()
        stale = now - self.ttl
        row = sql.fetchone(self._read, [key])
        if row is not None and row[0] is not None and as_aware(row[0]) >= stale:
            return False
        adapt = connection.ops.adapt_datetimefield_value
        return sql.fetchone(self._set, [key, adapt(now), adapt(stale)]) is not None

    def arm(self, key, *, now: dt.datetime | None = None) -> None:
        """Set the flag whatever it holds: a run that must run again later (it retries) keeps it
        set, so the requests meanwhile queue nothing, and its ttl counts from now."""
        now = now or timezone.now()
        self.model.objects.update_or_create(pk=key, defaults={"requested_at": now})

    def clear(self, key) -> None:
        """A run starts (before it reads), or queueing one failed and the next request must try again."""
        self.model.objects.filter(pk=key).update(requested_at=None)
