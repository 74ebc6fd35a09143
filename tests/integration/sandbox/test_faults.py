"""Settable faults: latency, 5xx for the next N calls, timeouts, before/after the write."""

import pytest

from apps.core.exceptions import InvalidRequest
from apps.sandbox.selectors import sandbox_counters, sandbox_method_calls, sandbox_records
from apps.sandbox.services import sandbox_oauth_client_create, sandbox_oauth_issue, sandbox_set_faults

pytestmark = pytest.mark.django_db

INTERNAL = {"error": "INTERNAL_SERVER_ERROR", "error_description": "Internal server error"}


def titles(rest):
    return [r["TITLE"] for r in sandbox_records(portal=rest.portal, entity="lead")]


def test_5xx_before_means_nothing_was_written(rest):
    sandbox_set_faults(portal=rest.portal, fail_5xx=2, when="before")
    for title in ("a", "b"):
        answer = rest.call("crm.lead.add", {"fields": {"TITLE": title}})
        assert answer.status_code == 500
        assert answer.json() == INTERNAL
    assert titles(rest) == []
    assert rest.call("crm.lead.add", {"fields": {"TITLE": "c"}}).status_code == 200
    assert titles(rest) == ["c"]
    counters = sandbox_counters(portal=rest.portal)
    assert counters["faults_injected"] == 2 and counters["methods"]["crm.lead.add"] == 1


def test_5xx_after_means_the_write_happened(rest):
    sandbox_set_faults(portal=rest.portal, fail_5xx=1, when="after")
    answer = rest.call("crm.lead.add", {"fields": {"TITLE": "lost answer"}})
    assert answer.status_code == 500
    assert titles(rest) == ["lost answer"]
    assert sandbox_method_calls(portal=rest.portal, method="crm.lead.add") == 1
    assert rest.call("crm.lead.get", {"id": 1}).status_code == 200


def test_faults_can_target_methods(rest):
    sandbox_set_faults(portal=rest.portal, fail_5xx=1, methods=["crm.lead.add"])
    assert rest.call("server.time").status_code == 200
    assert rest.call("crm.lead.list").status_code == 200
    assert rest.call("crm.lead.add", {"fields": {"TITLE": "x"}}).status_code == 500
    assert rest.call("crm.lead.add", {"fields": {"TITLE": "y"}}).status_code == 200


def test_5xx_on_batch_after_keeps_sub_call_writes(rest):
    sandbox_set_faults(portal=rest.portal, fail_5xx=1, when="after", methods=["batch"])
    answer = rest.call("batch", {"cmd": {"a": "crm.lead.add?fields[TITLE]=one", "b": "crm.lead.add?fields[TITLE]=two"}})
    assert answer.status_code == 500
    assert titles(rest) == ["one", "two"]


def test_latency_is_slept_before_every_answer(rest, sb_clock):
    sandbox_set_faults(portal=rest.portal, latency=1.5)
    body = rest.call("server.time").json()
    assert sb_clock.slept == [1.5]
    assert body["time"]["duration"] == 1.5
    rest.call("server.time")
    assert sb_clock.slept == [1.5, 1.5]
    sandbox_set_faults(portal=rest.portal)
    rest.call("server.time")
    assert sb_clock.slept == [1.5, 1.5]


def test_timeout_before_sleeps_then_fails_without_writing(rest, sb_clock):
    sandbox_set_faults(portal=rest.portal, timeout_seconds=90, when="before")
    answer = rest.call("crm.lead.add", {"fields": {"TITLE": "never"}})
    assert sb_clock.slept == [90]
    assert answer.status_code == 500
    assert titles(rest) == []
    assert rest.call("crm.lead.add", {"fields": {"TITLE": "ok"}}).status_code == 200  # one call only by default
    assert sb_clock.slept == [90]


def test_timeout_after_writes_then_sleeps_then_answers(rest, sb_clock):
    sandbox_set_faults(portal=rest.portal, timeout_seconds=30, timeout_calls=2, when="after")
    first = rest.call("crm.lead.add", {"fields": {"TITLE": "slow 1"}})
    second = rest.call("crm.lead.add", {"fields": {"TITLE": "slow 2"}})
    assert first.status_code == second.status_code == 200
    assert sb_clock.slept == [30, 30]
    assert titles(rest) == ["slow 1", "slow 2"]


def test_expired_switch(client, rest):
    client_id, _ = sandbox_oauth_client_create()
    token = sandbox_oauth_issue(portal=rest.portal, client_id=client_id)["access_token"]
    assert client.get(f"/sandbox/acme/rest/server.time?auth={token}").status_code == 200
    sandbox_set_faults(portal=rest.portal, expired=True)
    answer = client.get(f"/sandbox/acme/rest/server.time?auth={token}")
    assert answer.status_code == 401 and answer.json()["error"] == "expired_token"


@pytest.mark.parametrize("kwargs", [
    {"when": "during"}, {"fail_5xx": -1}, {"latency": -0.5}, {"timeout_seconds": float("nan")},
    {"methods": "crm.lead.add"}, {"fail_5xx": True},
])
def test_fault_settings_are_validated(sb_portal, kwargs):
    with pytest.raises(InvalidRequest):
        sandbox_set_faults(portal=sb_portal, **kwargs)
