"""Transactions of the sandbox portal's own state (its bucket, counters, operating seconds,
records and event queue).

`portal_atomic()` is `transaction.atomic()` whose commit, on PostgreSQL, does not wait for the
write-ahead log to reach the disk (`SET LOCAL synchronous_commit TO OFF`: this transaction only).
The sandbox stands in for a remote portal; its answers should cost what a portal's do, not a disk
flush per bookkeeping commit (three or four per call). A crash of the database server may lose
its last few hundred milliseconds of sandbox changes; nothing else is affected. The setting is
applied only when the block is the outermost transaction: inside a caller's transaction (a test,
or the plane's own) it would make the caller's commit asynchronous too, so there it is left out.
"""

import contextlib

from django.db import connection, transaction


@contextlib.contextmanager
def portal_atomic():
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        yield
