"""apps.core.wakeup: a notify reaches waiters of its key in this process and in others (the
embedded default's unix datagrams here; Redis in tests/services/test_long_poll_worker.py), only
after commit, and a failing transport never fails the caller."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import transaction

from apps.core import wakeup

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def unix_transport(settings):
    """The suite's default (no Redis configured): this process receives on a unix socket."""
    assert wakeup.transport_name() == "unix"


def notify_from_another_process(*keys):
    code = f"import django; django.setup(); from apps.core import wakeup; wakeup.notify(*{keys!r})"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WAKEUP_URL": "unix",
           "DJANGO_SETTINGS_MODULE": "controlplane.settings"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_notify_from_another_process_wakes_the_waiter_of_its_key():
    with wakeup.subscribe(["plan:a"]) as sub, wakeup.subscribe(["plan:b"]) as other:
        notify_from_another_process("plan:a")
        assert sub.wait_sync(60) is True
        assert sub.woken >= 1 and other.woken == 0


def test_a_notify_in_this_process_wakes_its_waiters_at_once():
    with wakeup.subscribe(["events:1", "events:2"]) as sub:
        wakeup.notify("events:2")
        assert sub.woken == 1 and sub.wait_sync(0) is True
        assert sub.wait_sync(0) is False  # consumed
    assert wakeup.waiting_count() == 0


@pytest.mark.django_db(transaction=True)
def test_notify_on_commit_wakes_only_after_the_commit():
    with wakeup.subscribe(["plan:c"]) as sub:
        with transaction.atomic():
            wakeup.notify_on_commit("plan:c")
            assert sub.woken == 0
        assert sub.woken == 1
        with transaction.atomic():
            wakeup.notify_on_commit("plan:c")
            transaction.set_rollback(True)
        assert sub.woken == 1


def test_a_socket_left_by_a_gone_process_is_removed_and_others_still_hear(tmp_path):
    with wakeup.subscribe(["plan:d"]) as sub:
        directory = wakeup._transport().dir
        stale = os.path.join(directory, "999999999.sock")
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        dead.bind(stale)
        dead.close()  # the file stays, nobody reads it: ECONNREFUSED
        notify_from_another_process("plan:d")
        assert sub.wait_sync(60) is True
    assert not os.path.exists(stale)


def test_a_failing_transport_never_fails_the_caller(monkeypatch, caplog):
    class Broken:
        def publish(self, keys):
            raise ConnectionError("redis is down")

        def start_receiving(self):
            pass

    with wakeup.subscribe(["plan:e"]) as sub:
        monkeypatch.setattr(wakeup, "_transport", lambda: Broken())
        wakeup.notify("plan:e")  # does not raise
        assert sub.woken == 1
    assert "wake-up for plan:e not sent" in caplog.text


def test_a_long_wakeup_dir_falls_back_to_a_private_short_one(settings, tmp_path):
    settings.WAKEUP_DIR = str(tmp_path / ("x" * 120))
    short = wakeup.wakeup_dir()
    assert len(short) < 90 and os.stat(short).st_uid == os.getuid()
    assert oct(os.stat(short).st_mode & 0o777) == "0o700"


def test_long_waits_end_at_scattered_moments_of_their_last_tenth_and_short_ones_on_time():
    """Waits that began together must not all end together (the herd comes back every N s)."""
    ends = []
    for _ in range(200):
        before = wakeup.time.monotonic()
        ends.append(wakeup.wait_deadline(30) - before)
    assert all(26.9 <= end <= 30.01 for end in ends), (min(ends), max(ends))
    assert max(ends) - min(ends) > 2.0  # spread over the tenth, not one moment
    before = wakeup.time.monotonic()
    short = wakeup.wait_deadline(wakeup.HERD_MIN_SECONDS - 1) - before
    assert wakeup.HERD_MIN_SECONDS - 1 <= short < wakeup.HERD_MIN_SECONDS - 0.99
