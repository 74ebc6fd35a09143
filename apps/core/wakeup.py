"""Wake-ups: a waiting request (the API's and MCP's `wait`) sleeps until whoever changed the state
it waits on says so, in this process or in another one (a Celery worker, another web process).

`notify(key)` (or `notify_on_commit(key)` inside a transaction: a waiter must never be woken
before the change is visible) wakes this process's waiters at once and tells the other processes
through the transport `WAKEUP_URL` names:

- `redis://...`: one PUBLISH on the channel `WAKEUP_CHANNEL`; each waiting process holds one
  subscription (production: the default when `CACHE_URL` or `CELERY_BROKER_URL` is Redis);
- `unix`: one datagram to each waiting process's socket under `WAKEUP_DIR` (the embedded
  default: SQLite and the filesystem broker, web and worker on one host; no server needed);
- `local`: this process only.

A process that waits starts one daemon thread that receives for all its waiters; a waiter holds
no thread of its own (`Subscription.wait` is awaited; `wait_sync` is for sync callers). Keys are
short strings: `plan:<uuid>`, `events:<portal id>`.

Nothing depends on a signal arriving: a waiter re-reads the state after subscribing, and again
every `WAKEUP_FALLBACK_SECONDS` (default 5 s) anyway, a safety net for a signal lost while Redis
reconnects or a socket buffer was full, not the way waits are answered. (The API's async plan
waits share one check per event loop instead: `apps.plans.selectors._FinalSweep`.) A failing transport is
logged and never fails the caller: the change it reports is already committed.
"""

import asyncio
import atexit
import contextlib
import hashlib
import logging
import os
import random
import secrets
import socket
import stat
import tempfile
import threading
import time
from pathlib import Path

from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_waiters: dict[str, set["Subscription"]] = {}
_state: dict = {"pid": None}  # this process's transport objects; reset after a fork
_MAX_DATAGRAM = 8192


def plan_key(plan_id) -> str:
    return f"plan:{plan_id}"


def events_key(portal_id) -> str:
    return f"events:{portal_id}"


# --------------------------------------------------------------------------- waiting


class Subscription:
    """Registered for `keys` from creation to `close()`: a notify in between is never lost
    (it sets the flag; the next `wait` returns at once)."""

    def __init__(self, keys):
        self.keys = tuple(keys)
        self._flag = threading.Event()
        self._loop = None
        self._event = None
        self.woken = 0  # how many times a notify reached this subscription (tests read it)

    def _fire(self) -> None:
        self.woken += 1
        self._flag.set()
        loop, event = self._loop, self._event
        if loop is not None and event is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(event.set)

    async def wait(self, timeout: float) -> bool:
        """Until a notify or `timeout` seconds; True when notified. Holds no thread."""
        if self._event is None:
            self._loop, self._event = asyncio.get_running_loop(), asyncio.Event()
        if not self._flag.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()
        notified = self._flag.is_set()
        self._flag.clear()
        return notified

    def wait_sync(self, timeout: float) -> bool:
        """The same for sync code (it blocks its thread)."""
        notified = self._flag.wait(timeout)
        self._flag.clear()
        return notified

    def close(self) -> None:
        with _lock:
            for key in self.keys:
                waiters = _waiters.get(key)
                if waiters is not None:
                    waiters.discard(self)
                    if not waiters:
                        del _waiters[key]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def subscribe(keys) -> Subscription:
    """Start listening for `keys` (use as a context manager). Check the state *after* this."""
    _ensure_receiver()
    sub = Subscription(keys)
    with _lock:
        for key in sub.keys:
            _waiters.setdefault(key, set()).add(sub)
    return sub


#: Waits this long or longer end at a random moment of their last tenth when nothing happened.
HERD_MIN_SECONDS = 10


def wait_deadline(seconds: float) -> float:
    """The `time.monotonic()` at which a wait of `seconds` ends if nothing wakes it. A long wait
    (`HERD_MIN_SECONDS` or more) ends at a random moment of its last tenth: waits that began in
    the same instant (a fleet of agents started together, their server restarted) would otherwise
    end, be answered and come back together every `seconds`, a herd the server must answer at
    once. `?wait=N` is the longest a caller waits, so ending up to a tenth early keeps its word."""
    spread = seconds / 10 if seconds >= HERD_MIN_SECONDS else 0.0
    return time.monotonic() + seconds - random.uniform(0.0, spread)  # noqa: S311  # nosec B311 - not a secret


def fallback_seconds() -> float:
    return float(getattr(settings, "WAKEUP_FALLBACK_SECONDS", 5.0))


def waiting_count() -> int:
    with _lock:
        return sum(len(s) for s in _waiters.values())


def wake_here(*keys: str) -> None:
    """Wake this process's waiters of `keys` (a fallback check found their state changed)."""
    _dispatch(keys)


def _dispatch(keys) -> None:
    with _lock:
        subs = {sub for key in keys for sub in _waiters.get(key, ())}
    for sub in subs:
        sub._fire()


# --------------------------------------------------------------------------- notifying


def notify(*keys: str) -> None:
    """Wake the waiters of `keys` here and in every other process. Never raises."""
    if not keys:
        return
    _dispatch(keys)
    try:
        _transport().publish(keys)
    except Exception:  # noqa: BLE001 - the change is committed; waiters fall back to re-reading
        logger.warning("wake-up for %s not sent", keys[0], exc_info=True)


def notify_on_commit(*keys: str, using=None) -> None:
    transaction.on_commit(lambda: notify(*keys), using=using)


# --------------------------------------------------------------------------- transports


def transport_name() -> str:
    url = getattr(settings, "WAKEUP_URL", "unix") or "unix"
    return "redis" if url.startswith(("redis://", "rediss://", "unix+redis://")) else url


def _transport():
    pid = os.getpid()
    if _state["pid"] != pid:  # first use, or a forked child (a Celery prefork process)
        _state.clear()
        _state["pid"] = pid
        _state["origin"] = f"{pid}-{secrets.token_hex(4)}"
        name = transport_name()
        _state["transport"] = (_RedisTransport() if name == "redis"
                               else _UnixTransport() if name == "unix" else _LocalTransport())
    return _state["transport"]


def _ensure_receiver() -> None:
    transport = _transport()
    if _state.get("receiving"):
        return
    with _lock:
        if _state.get("receiving"):
            return
        transport.start_receiving()
        _state["receiving"] = True


class _LocalTransport:
    def publish(self, keys) -> None:
        pass

    def start_receiving(self) -> None:
        pass


class _RedisTransport:
    """PUBLISH "<origin> <key> ..." on one channel; a process ignores its own messages (it already
    woke its waiters)."""

    def __init__(self):
        import redis

        self.url = settings.WAKEUP_URL
        self.channel = getattr(settings, "WAKEUP_CHANNEL", "cp:wakeup")
        self.client = redis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)

    def publish(self, keys) -> None:
        self.client.publish(self.channel, " ".join((_state["origin"], *keys)))

    def start_receiving(self) -> None:
        import redis

        pubsub = redis.Redis.from_url(self.url, socket_connect_timeout=2).pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(self.channel)  # subscribed before the first waiter checks its state
        threading.Thread(target=self._receive, args=(pubsub,), name="wakeup-redis", daemon=True).start()

    def _receive(self, pubsub) -> None:
        import time

        while True:
            try:
                for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    origin, *keys = message["data"].decode("utf-8", "replace").split()
                    if origin != _state.get("origin"):
                        _dispatch(keys)
            except Exception:  # noqa: BLE001 - reconnect; waiters re-read on their fallback interval
                logger.warning("wake-up subscription lost; reconnecting", exc_info=True)
                time.sleep(1.0)
                with contextlib.suppress(Exception):
                    pubsub.subscribe(self.channel)


class _UnixTransport:
    """Each process that waits binds a datagram socket `<pid>.sock` in the wake-up directory; a
    notify sends one datagram to every socket there (a refused one is a process gone: removed)."""

    def __init__(self):
        self.dir = wakeup_dir()
        self.path = None
        self.sender = None

    def publish(self, keys) -> None:
        payload = "\n".join(keys).encode()[:_MAX_DATAGRAM]
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return  # nobody has ever waited
        if self.sender is None:
            self.sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.sender.setblocking(False)
        for name in names:
            if not name.endswith(".sock"):
                continue
            path = os.path.join(self.dir, name)
            if path == self.path:
                continue  # this process: already woken by notify()
            try:
                self.sender.sendto(payload, path)
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(OSError):
                    os.unlink(path)  # its process is gone
            except (BlockingIOError, OSError):
                pass  # a full buffer: that process is busy; its waiters fall back to re-reading

    def start_receiving(self) -> None:
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        path = os.path.join(self.dir, f"{os.getpid()}.sock")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a previous process with this pid
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        self.path = path
        atexit.register(_unlink_quietly, path)
        threading.Thread(target=self._receive, args=(sock,), name="wakeup-unix", daemon=True).start()

    def _receive(self, sock) -> None:
        while True:
            try:
                data = sock.recv(_MAX_DATAGRAM)
            except OSError:
                logger.warning("wake-up socket closed", exc_info=True)
                return
            _dispatch(data.decode("utf-8", "replace").split("\n"))


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def wakeup_dir() -> str:
    """`WAKEUP_DIR`, or when its socket paths would be too long for AF_UNIX (108 bytes), a
    private directory under the system temp dir named after it."""
    configured = str(getattr(settings, "WAKEUP_DIR", "") or Path(settings.DATA_DIR) / "wakeup")
    if len(configured) + len("/4194304.sock") < 100:
        return configured
    digest = hashlib.sha256(configured.encode()).hexdigest()[:16]
    short = os.path.join(tempfile.gettempdir(), f"cp-wakeup-{os.getuid()}-{digest}")
    os.makedirs(short, mode=0o700, exist_ok=True)
    info = os.lstat(short)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise RuntimeError(f"{short} is not a directory of this user; set WAKEUP_DIR to a short path")
    return short
