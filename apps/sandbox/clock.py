"""The sandbox's only source of time. Tests monkeypatch `apps.sandbox.clock.now` (and `sleep`)
to move time without waiting; every sandbox module calls `clock.now()` through this module."""

import time


def now() -> float:
    return time.time()


def sleep(seconds: float) -> None:
    if seconds > 0:
        time.sleep(seconds)
