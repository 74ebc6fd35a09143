"""Cloud limits: the per-portal leaky bucket (503) and the operating-time limit (429)."""

import json

import pytest

from apps.sandbox.selectors import sandbox_counters
from apps.sandbox.services import (
    sandbox_portal_ensure,
    sandbox_reset_limits,
    sandbox_set_limits,
    sandbox_webhook_create,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def hook(client, sb_clock):
    portal = sandbox_portal_ensure(slug="limited")  # defaults: drain 2/s, burst 50
    user_id, code = sandbox_webhook_create(portal=portal, code="limitcode")

    def call(method, params=None, code_=code):
        return client.post(f"/sandbox/limited/rest/{user_id}/{code_}/{method}", data=json.dumps(params or {}),
                           content_type="application/json")

    call.portal = portal
    return call


def test_bucket_refuses_after_burst_and_recovers_with_time(hook, sb_clock):
    for _ in range(50):
        assert hook("server.time").status_code == 200
    refused = hook("server.time")
    assert refused.status_code == 503
    assert refused.json() == {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
    assert sandbox_counters(portal=hook.portal)["query_limit_refusals"] == 1

    sb_clock.advance(0.4)  # drains 0.8: still no room for one more
    assert hook("server.time").status_code == 503
    sb_clock.advance(0.1)  # 1.0 drained
    assert hook("server.time").status_code == 200
    assert hook("server.time").status_code == 503

    sb_clock.advance(10)  # 20 slots
    assert [hook("server.time").status_code for _ in range(21)] == [200] * 20 + [503]
    assert sandbox_counters(portal=hook.portal)["query_limit_refusals"] == 4


def test_refused_requests_run_nothing_and_bad_auth_also_counts(hook, sb_clock):
    for _ in range(50):
        assert hook("server.time", code_="wrong").status_code == 401
    assert hook("crm.lead.add", {"fields": {"TITLE": "x"}}).status_code == 503
    assert "crm.lead.add" not in sandbox_counters(portal=hook.portal)["methods"]


def test_batch_counts_as_one_request(hook, sb_clock):
    for _ in range(49):
        assert hook("server.time").status_code == 200
    answer = hook("batch", {"cmd": {f"c{i}": "server.time" for i in range(50)}})
    assert answer.status_code == 200
    assert len(answer.json()["result"]["result"]) == 50
    assert hook("server.time").status_code == 503


def test_bucket_settings_per_portal(hook, sb_clock):
    sandbox_set_limits(portal=hook.portal, rate=5, burst=3)
    assert [hook("server.time").status_code for _ in range(4)] == [200, 200, 200, 503]
    sb_clock.advance(0.2)
    assert hook("server.time").status_code == 200
    sandbox_reset_limits(portal=hook.portal)
    assert [hook("server.time").status_code for _ in range(4)] == [200, 200, 200, 503]


def test_operating_time_limit(hook, sb_clock):
    sandbox_set_limits(portal=hook.portal, burst=1000, operating_limit=10, method_costs={"crm.lead.list": 4})
    operating, reset_at = [], []
    for _ in range(3):
        answer = hook("crm.lead.list")
        assert answer.status_code == 200
        operating.append(answer.json()["time"]["operating"])
        reset_at.append(answer.json()["time"]["operating_reset_at"])
        sb_clock.advance(61)  # each call in its own minute bucket
    # 4, 8, then 12: the call that crosses the limit finishes
    assert operating == [4, 8, 12]
    blocked = hook("crm.lead.list")
    assert blocked.status_code == 429
    body = blocked.json()
    assert body["error"] == "OPERATION_TIME_LIMIT"
    assert "time" not in body  # only the code is documented; the reset time came with the last success
    first_call = 1_800_000_000.0
    assert reset_at == [first_call + 600] * 3
    assert sandbox_counters(portal=hook.portal)["operation_limit_refusals"] == 1

    # other methods and other webhooks keep working
    assert hook("crm.lead.fields").status_code == 200
    _, other = sandbox_webhook_create(portal=hook.portal, code="otherhook")
    assert hook("crm.lead.list", code_=other).status_code == 200

    # when the oldest bucket drops out the sum is 8 again: allowed
    sb_clock.t = first_call + 600
    again = hook("crm.lead.list")
    assert again.status_code == 200
    assert again.json()["time"]["operating"] == 12  # 8 + this call
    assert hook("crm.lead.list").status_code == 429


def test_operating_inside_batch_counts_per_sub_method(hook, sb_clock):
    sandbox_set_limits(portal=hook.portal, burst=1000, operating_limit=5, method_costs={"crm.lead.add": 3})
    cmd = {"a": "crm.lead.add?fields[TITLE]=a", "b": "crm.lead.add?fields[TITLE]=b",
           "c": "crm.lead.add?fields[TITLE]=c", "t": "server.time"}
    body = hook("batch", {"cmd": cmd}).json()
    assert body["result"]["result"]["a"] == 1 and body["result"]["result"]["b"] == 2
    assert body["result"]["result_error"] == {"c": {"error": "OPERATION_TIME_LIMIT",
                                                    "error_description": "Method is blocked due to operation "
                                                                         "time limit."}}
    assert "t" in body["result"]["result"]
    assert "operating" not in body["time"]  # the outer batch does not count
    assert hook("crm.lead.add", {"fields": {"TITLE": "d"}}).status_code == 429
    # batch itself is never blocked by operating time
    assert hook("batch", {"cmd": {"t": "server.time"}}).status_code == 200
    sandbox_reset_limits(portal=hook.portal)
    assert hook("crm.lead.add", {"fields": {"TITLE": "d"}}).status_code == 200
