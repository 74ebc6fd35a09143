"""How long a method refused with OPERATION_TIME_LIMIT is held (apps.bitrix.limiter, FACTS §5)."""

from types import SimpleNamespace

import pytest

from apps.bitrix import limiter

NOW = 1_000_000.0
WINDOW = limiter.DEFAULT_OPERATING_WINDOW


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    monkeypatch.setattr(limiter, "time", SimpleNamespace(time=lambda: NOW))
    monkeypatch.setattr(limiter, "_operating_reset", {})


def reset_at(method="crm.lead.list", time_info=None, portal_id=1):
    return limiter.operating_time_reset_at(portal_id=portal_id, method=method, time_info=time_info)


def test_the_refusal_s_own_reset_time_wins():
    limiter.operating_time_seen(portal_id=1, method="crm.lead.list", time_info={"operating_reset_at": NOW + 50})
    assert reset_at(time_info={"operating_reset_at": NOW + 120}) == NOW + 120


def test_else_the_last_reset_time_seen_for_that_portal_and_method():
    limiter.operating_time_seen(portal_id=1, method="CRM.Lead.List", time_info={"operating_reset_at": str(NOW + 90)})
    assert reset_at(method="crm.lead.list") == NOW + 90
    assert reset_at(method="crm.lead.get") == NOW + WINDOW
    assert reset_at(portal_id=2) == NOW + WINDOW


def test_else_the_default_window_and_never_more_than_twice_it():
    assert reset_at() == NOW + WINDOW
    assert reset_at(time_info={"operating_reset_at": NOW - 5}) == NOW + WINDOW  # already past
    assert reset_at(time_info={"operating_reset_at": NOW + 10 * WINDOW}) == NOW + 2 * WINDOW


def test_unreadable_reset_times_are_ignored():
    limiter.operating_time_seen(portal_id=1, method="crm.lead.list", time_info={"operating_reset_at": "soon"})
    limiter.operating_time_seen(portal_id=1, method="crm.lead.list", time_info=None)
    assert limiter._operating_reset == {}
    assert reset_at(time_info={"operating_reset_at": "soon"}) == NOW + WINDOW
