"""What async views need to wait without holding a thread (the API's `?wait=` long polls).

Django under ASGI runs each request's sync code (middleware hooks, `sync_to_async` calls) in a
one-thread executor that lives as long as the request. A long poll does its database work in
that thread, then `park()`s before it waits: the thread's database connections are closed and the
executor is let go, so a waiting request holds a coroutine and a socket, no thread and no
connection. The next `sync_to_async` call of the same request gets a fresh thread.

Under a sync caller (WSGI, Django's test client) the async view runs inside that caller's thread
via `async_to_sync`; that thread waits anyway, and `park()` does nothing.

`run_sync(fn, ...)` is how those views run their database work: at most `API_WAIT_DB_SLOTS`
(default 8) at once per event loop, so a burst of hundreds of long polls arriving (or woken)
together queues on the loop instead of opening hundreds of database connections at once.
"""

import asyncio
import weakref

from asgiref.sync import AsyncToSync, SyncToAsync, sync_to_async
from django.conf import settings
from django.db import connections

_slots: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]" = weakref.WeakKeyDictionary()


async def run_sync(fn, *args, **kwargs):
    """`fn(*args, **kwargs)` in the request's thread, holding one of the loop's database slots."""
    loop = asyncio.get_running_loop()
    slots = _slots.get(loop)
    if slots is None:
        slots = _slots[loop] = asyncio.Semaphore(int(getattr(settings, "API_WAIT_DB_SLOTS", 8)))
    async with slots:
        return await sync_to_async(fn)(*args, **kwargs)


def release_connections() -> None:
    """Close this thread's database connections (none inside a transaction): called by a sync part
    that hands over to a wait, so waiting requests never hold connections while they queue for a
    slot or sleep."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close()


def _request_executor_context():
    """The request's thread-sensitive context when its sync code runs in an executor of its own
    (ASGI), else None (a sync caller's thread, or no request)."""
    if getattr(AsyncToSync.executors, "current", None) is not None:
        return None
    return SyncToAsync.thread_sensitive_context.get(None)


async def park() -> None:
    """Let go of this request's thread and database connections before a long wait."""
    context = _request_executor_context()
    if context is None:
        return
    if context in SyncToAsync.context_to_thread_executor:
        await sync_to_async(release_connections)()
    executor = SyncToAsync.context_to_thread_executor.pop(context, None)
    if executor is not None:
        executor.shutdown(wait=False)
