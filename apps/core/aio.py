"""What async views need to wait without holding a thread (the API's `?wait=` long polls).

Django under ASGI gives each request a one-thread executor for its sync code (middleware hooks,
signals) that lives as long as the request. A long poll `park()`s before it waits: that thread
is let go (its database connections closed first), so a waiting request holds a coroutine and a
socket, no thread and no connection. A later sync call of the same request gets a fresh thread.

Under a sync caller (WSGI, Django's test client) the async view runs inside that caller's thread
via `async_to_sync`; that thread waits anyway, and `park()` does nothing. That costs every request
a new event loop in a new thread and two thread hops, waiting or not: a view written with
`long_poll` has a `blocking` twin that the WSGI application runs instead (apps.core.handlers),
which enters an event loop only for the wait itself.

`run_sync(fn, ...)` is how those views run their database work. Under ASGI it runs in a pool
of `API_WAIT_DB_SLOTS` (default 8) threads per process whose database connections are kept
(closed after a database error), so hundreds of long polls arriving or woken together queue for
a thread instead of each opening a connection (PostgreSQL forks a backend per connection). Under
a sync caller it runs in that caller's thread, as `sync_to_async` does.
"""

import dataclasses
import functools
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import AsyncToSync, SyncToAsync, async_to_sync, sync_to_async
from django.conf import settings
from django.db import DatabaseError, connections

_pool: dict = {"pid": None, "executor": None}
_thread = threading.local()


def _mark_pooled() -> None:
    _thread.pooled = True


def _executor() -> ThreadPoolExecutor:
    import os

    if _pool["pid"] != os.getpid():  # first use, or a forked child
        _pool["pid"] = os.getpid()
        _pool["executor"] = ThreadPoolExecutor(int(getattr(settings, "API_WAIT_DB_SLOTS", 8)),
                                               thread_name_prefix="api-wait-db", initializer=_mark_pooled)
    return _pool["executor"]


def _pooled(fn):
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DatabaseError:
            for conn in connections.all(initialized_only=True):
                conn.close()  # a broken connection is not kept for the next request
            raise
    return run


async def run_sync(fn, *args, **kwargs):
    """`fn(*args, **kwargs)`: in the pool under ASGI, in the sync caller's thread otherwise."""
    if _request_executor_context() is None:
        return await sync_to_async(fn)(*args, **kwargs)
    return await sync_to_async(_pooled(fn), thread_sensitive=False, executor=_executor())(*args, **kwargs)


def release_connections() -> None:
    """Close this thread's database connections (none inside a transaction, and none of the pool's,
    which are kept): called by a sync part that hands over to a wait, so a waiting request holds no
    connection."""
    if getattr(_thread, "pooled", False):
        return
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close()


def _request_executor_context():
    """The request's thread-sensitive context when its sync code runs in an executor of its own
    (ASGI), else None (a sync caller's thread, or no request)."""
    if getattr(AsyncToSync.executors, "current", None) is not None:
        return None
    return SyncToAsync.thread_sensitive_context.get(None)


class _AfterWaitThread(ThreadPoolExecutor):
    """One thread per process for what a request still runs in its own thread-sensitive context
    after it parked: Django closes the response there (`response.close()`, which sends
    `request_finished`). Without it each parked request gets a new executor thread for that
    call, and another thread to join it when its context exits: hundreds of threads started at
    once when hundreds of waits end together. Nothing runs there that opens a database
    connection (the views' database work runs in the pool). No request shuts it down."""

    def __init__(self):
        super().__init__(max_workers=1, thread_name_prefix="api-after-wait")

    def shutdown(self, wait=True, *, cancel_futures=False):
        """Kept for the process's life."""


_after_wait: dict = {"pid": None, "executor": None}


def _after_wait_thread() -> _AfterWaitThread:
    import os

    if _after_wait["pid"] != os.getpid():  # first use, or a forked child
        _after_wait["pid"] = os.getpid()
        _after_wait["executor"] = _AfterWaitThread()
    return _after_wait["executor"]


async def park() -> None:
    """Let go of this request's thread and database connections before a long wait; what the
    request runs in its own context afterwards goes to the shared after-wait thread."""
    context = _request_executor_context()
    if context is None:
        return
    executor = SyncToAsync.context_to_thread_executor.get(context)
    if executor is not None and not isinstance(executor, _AfterWaitThread):
        await sync_to_async(release_connections)()
        SyncToAsync.context_to_thread_executor.pop(context, None)
        executor.shutdown(wait=False)
    SyncToAsync.context_to_thread_executor[context] = _after_wait_thread()


def forget_after_wait(**kwargs) -> None:
    """A `request_finished` receiver (connected in apps.core.apps): a parked request's context
    lets go of the shared thread once its response is closed, so the context's exit finds no
    executor of its own to join (asgiref starts a thread for that join)."""
    context = SyncToAsync.thread_sensitive_context.get(None)
    if context is not None and isinstance(SyncToAsync.context_to_thread_executor.get(context), _AfterWaitThread):
        SyncToAsync.context_to_thread_executor.pop(context, None)


@dataclasses.dataclass
class Waiting:
    """What a view's sync part answers when the answer must wait: `wait()` makes the awaitable
    (it holds no thread under ASGI), then `then(result)`, sync code, makes the answer."""

    wait: Callable[[], Awaitable]
    then: Callable[[Any], Any]


def long_poll(sync_part):
    """A view that may wait, written once as its sync part, which answers at once or answers
    `Waiting`. Returns the async view (the sync parts run through `run_sync`, the wait is awaited)
    with a `blocking` twin for a sync caller: the sync parts run in the caller's thread and an
    event loop is entered only to wait. `json_endpoint` wraps both."""

    @functools.wraps(sync_part)
    async def view(request, *args, **kwargs):
        answer = await run_sync(sync_part, request, *args, **kwargs)
        if isinstance(answer, Waiting):
            answer = await run_sync(answer.then, await answer.wait())
        return answer

    @functools.wraps(sync_part)
    def blocking(request, *args, **kwargs):
        answer = sync_part(request, *args, **kwargs)
        if isinstance(answer, Waiting):
            answer = answer.then(async_to_sync(answer.wait)())
        return answer

    view.blocking = blocking
    return view
