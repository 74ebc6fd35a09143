"""What async views need to wait without holding a thread (the API's `?wait=` long polls).

Django under ASGI runs each request's sync code (middleware hooks, `sync_to_async` calls) in a
one-thread executor that lives as long as the request. A long poll does its database work in
that thread, then `park()`s before it waits: the thread's database connections are closed and the
executor is let go, so a waiting request holds a coroutine and a socket, no thread and no
connection. The next `sync_to_async` call of the same request gets a fresh thread.

Under a sync caller (WSGI, Django's test client) the async view runs inside that caller's thread
via `async_to_sync`; that thread waits anyway, and `park()` does nothing.
"""

from asgiref.sync import AsyncToSync, SyncToAsync, sync_to_async
from django.db import connections


def _close_connections() -> None:
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
        await sync_to_async(_close_connections)()
    executor = SyncToAsync.context_to_thread_executor.pop(context, None)
    if executor is not None:
        executor.shutdown(wait=False)
