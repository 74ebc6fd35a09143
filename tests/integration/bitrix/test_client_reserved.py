"""A request sent on a slot the caller reserved (the executor's batches): no second slot is taken,
and a slot whose request never left is given back."""

import json

import pytest

from apps.bitrix import limiter
from apps.bitrix.client import BitrixClient
from apps.bitrix.errors import InvalidCall, NotSent

pytestmark = pytest.mark.django_db


class FakeResponse:
    status_code = 200

    def __init__(self, body):
        self.content = json.dumps(body).encode()


def level(portal):
    return limiter.limiter_level(portal_id=portal.pk, rate=portal.rate_per_second)


@pytest.fixture
def slow_portal(portal):
    portal.rate_per_second = 0.001  # the bucket barely drains while the test looks at it
    portal.save(update_fields=["rate_per_second"])
    return portal


def test_a_reserved_batch_takes_no_second_slot(slow_portal, monkeypatch):
    monkeypatch.setattr("apps.bitrix.client.http_send", lambda *a, json_body=None, **k: FakeResponse(
        {"result": {"result": {n: 1 for n in json_body["cmd"]}, "result_error": [], "result_total": [],
                    "result_next": [], "result_time": {}}}))
    limiter.limiter_reserve(portal_id=slow_portal.pk, rate=slow_portal.rate_per_second, burst=slow_portal.burst)
    assert level(slow_portal) == pytest.approx(1.0, abs=0.01)
    result = BitrixClient(slow_portal).batch([("a", "crm.lead.get", {"id": 1}), ("b", "crm.lead.get", {"id": 2})],
                                             halt=False, reserved=True)
    assert result.results == {"a": 1, "b": 1}
    assert level(slow_portal) == pytest.approx(1.0, abs=0.01)
    BitrixClient(slow_portal).batch([("a", "crm.lead.get", {"id": 1})], halt=False)  # not reserved: its own
    assert level(slow_portal) == pytest.approx(2.0, abs=0.01)


def test_a_reserved_slot_is_given_back_when_nothing_was_sent(slow_portal, monkeypatch):
    def refuse(*args, **kwargs):
        raise NotSent("CONNECTION_FAILED", "refused", retry_after=5.0)

    monkeypatch.setattr("apps.bitrix.client.http_send", refuse)
    limiter.limiter_reserve(portal_id=slow_portal.pk, rate=slow_portal.rate_per_second, burst=slow_portal.burst)
    with pytest.raises(NotSent):
        BitrixClient(slow_portal).call("crm.lead.get", {"id": 1}, reserved=True)
    assert level(slow_portal) == pytest.approx(0.0, abs=0.01)
    limiter.limiter_reserve(portal_id=slow_portal.pk, rate=slow_portal.rate_per_second, burst=slow_portal.burst)
    with pytest.raises(InvalidCall):  # a bad command is refused before sending
        BitrixClient(slow_portal).batch([("bad name!", "crm.lead.get", {})], reserved=True)
    assert level(slow_portal) == pytest.approx(0.0, abs=0.01)
