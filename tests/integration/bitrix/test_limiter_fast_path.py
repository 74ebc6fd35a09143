"""The limiter's one-statement reservation (`limiter._reserve_at_once`) keeps the arithmetic of
the locked path (`apps.core.leakybucket.reserve` with no wait) and never moves the row's clock
back, even when its time was read before another process moved the row."""

import pytest

from apps.bitrix import limiter
from apps.bitrix.models import PortalLimiter

pytestmark = pytest.mark.django_db


@pytest.fixture
def row(portal):
    return PortalLimiter.objects.create(portal=portal, level=3.0, updated_at=1000.0)


def at(monkeypatch, now):
    monkeypatch.setattr(limiter.time, "time", lambda: now)


def test_a_free_slot_drains_then_adds_one(monkeypatch, portal, row):
    at(monkeypatch, 1001.0)  # 1 s at 2/s drains 2
    assert limiter.limiter_reserve(portal_id=portal.pk, rate=2.0, burst=50) == 0.0
    row.refresh_from_db()
    assert (row.level, row.updated_at) == (pytest.approx(2.0), 1001.0)


def test_a_reservation_read_before_a_later_one_does_not_move_the_clock_back(monkeypatch, portal, row):
    at(monkeypatch, 999.0)  # read before the row (updated at 1000) was last moved
    assert limiter.limiter_reserve(portal_id=portal.pk, rate=2.0, burst=50) == 0.0
    row.refresh_from_db()
    assert (row.level, row.updated_at) == (pytest.approx(4.0), 1000.0)  # nothing drained, clock kept


def test_a_full_bucket_takes_the_locked_path_and_waits(monkeypatch, portal, row):
    PortalLimiter.objects.filter(pk=row.pk).update(level=49.0)  # burst 50 less the margin of 1: full
    at(monkeypatch, 1000.0)
    wait = limiter.limiter_reserve(portal_id=portal.pk, rate=2.0, burst=50)
    assert wait == pytest.approx(0.5)
    row.refresh_from_db()
    assert row.level == pytest.approx(50.0)
