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
import itertools
import os
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import AsyncToSync, SyncToAsync, async_to_sync, sync_to_async
from django.conf import settings
from django.db import DatabaseError, connections

_thread = threading.local()
_made: dict = {}  # name -> (pid, what was made in that process)
_turns = itertools.count()


def per_process(name: str, make):
    """`make()`'s result, made once per process (and again in a forked child)."""
    pid = os.getpid()
    found = _made.get(name)
    if found is None or found[0] != pid:
        found = _made[name] = (pid, make())
    return found[1]


def _mark_pooled() -> None:
    _thread.pooled = True


def _executor() -> ThreadPoolExecutor:
    return per_process("wait-pool", lambda: ThreadPoolExecutor(
        int(getattr(settings, "API_WAIT_DB_SLOTS", 8)), thread_name_prefix="api-wait-db", initializer=_mark_pooled))


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


class _SharedThread(ThreadPoolExecutor):
    """A single-thread executor that many requests share as their thread-sensitive thread, one
    request's calls at a time. Django's ASGI handler otherwise starts a new thread for every
    request (for its `request_started` and `request_finished` signals and any sync view) and
    another to join that one when the request's context exits; hundreds of long polls answered
    together would start hundreds of threads at once. No request shuts it down."""

    def __init__(self, n: int):
        super().__init__(max_workers=1, thread_name_prefix=f"api-request-{n}")

    def shutdown(self, wait=True, *, cancel_futures=False):
        """Kept for the process's life."""


def shared_request_thread() -> _SharedThread:
    """One of the process's `API_REQUEST_THREADS` (default 4) shared request threads, in turn."""
    threads = per_process("request-threads", lambda: [
        _SharedThread(n) for n in range(max(1, int(getattr(settings, "API_REQUEST_THREADS", 4))))])
    return threads[next(_turns) % len(threads)]


def use_shared_request_thread() -> None:
    """Give the current request's thread-sensitive context a shared thread (the API's ASGI
    handler calls it as each request starts, apps.core.handlers)."""
    context = SyncToAsync.thread_sensitive_context.get(None)
    if context is not None and context not in SyncToAsync.context_to_thread_executor:
        SyncToAsync.context_to_thread_executor[context] = shared_request_thread()


async def park() -> None:
    """Let go of this request's thread and database connections before a long wait. A request on
    a shared thread holds neither (other requests use that thread meanwhile); one with a thread
    of its own lets it go, and what it still runs in its own context afterwards (closing the
    response) goes to a shared thread."""
    context = _request_executor_context()
    if context is None:
        return
    executor = SyncToAsync.context_to_thread_executor.get(context)
    if isinstance(executor, _SharedThread):
        return
    if executor is not None:
        await sync_to_async(release_connections)()
        SyncToAsync.context_to_thread_executor.pop(context, None)
        executor.shutdown(wait=False)
    SyncToAsync.context_to_thread_executor[context] = shared_request_thread()


def forget_shared_thread(**kwargs) -> None:
    """A `request_finished` receiver (connected in apps.core.apps): once its response is closed a
    request's context lets go of its shared thread, so the context's exit finds no executor of
    its own to join (asgiref starts a thread for that join)."""
    context = SyncToAsync.thread_sensitive_context.get(None)
    if context is not None and isinstance(SyncToAsync.context_to_thread_executor.get(context), _SharedThread):
        SyncToAsync.context_to_thread_executor.pop(context, None)


@dataclasses.dataclass
class Waiting:
    """What a view's sync part answers when the answer must wait: `wait()` makes the awaitable
    (it holds no thread under ASGI), then `then(result)`, sync code, makes the answer."""

    wait: Callable[[], Awaitable]
    then: Callable[[Any], Any]

    def map(self, fn: Callable[[Any], Any]) -> "Waiting":
        """The same wait, its answer passed on to `fn` (sync code too)."""
        return Waiting(wait=self.wait, then=lambda result: fn(self.then(result)))


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
