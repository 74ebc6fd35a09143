"""REST 3.0 Idempotency-Key (FACTS §2)."""

import json

import pytest

from apps.sandbox.selectors import sandbox_records
from apps.sandbox.services import sandbox_webhook_create

pytestmark = pytest.mark.django_db

BODY = {"fields": {"title": "once", "creatorId": 1, "responsibleId": 1}}
PREFIX = "BITRIX_REST_V3_EXCEPTION_"


def _post(rest, body, key, *, code=None, method="tasks.task.add"):
    url = rest.url(method, api=True) if code is None else f"/sandbox/acme/rest/api/1/{code}/{method}"
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return rest.client.post(url, data=json.dumps(body), content_type="application/json", **headers)


def test_replay_returns_the_stored_answer(rest, sb_clock):
    first = _post(rest, BODY, "key-1")
    assert first.status_code == 200 and first["Idempotency-Key"] == "key-1"
    assert "Idempotent-Replayed" not in first
    sb_clock.advance(60)
    again = _post(rest, BODY, "key-1")
    assert again.status_code == 200 and again["Idempotent-Replayed"] == "true" and again["Idempotency-Key"] == "key-1"
    assert again.json() == first.json()
    assert len(sandbox_records(portal=rest.portal, entity="task")) == 1


def test_same_key_other_body_is_422(rest):
    assert _post(rest, BODY, "key-2").status_code == 200
    other = _post(rest, {"fields": {**BODY["fields"], "title": "twice"}}, "key-2")
    assert other.status_code == 422
    assert other.json()["error"]["code"] == PREFIX + "IDEMPOTENCYKEYREUSEDEXCEPTION"
    assert len(sandbox_records(portal=rest.portal, entity="task")) == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"])
def test_malformed_key_is_400(rest, key):
    answer = _post(rest, BODY, key)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == PREFIX + "INVALIDIDEMPOTENCYKEYEXCEPTION"
    assert sandbox_records(portal=rest.portal, entity="task") == []


def test_scope_is_caller_and_method_and_failures_are_not_stored(rest, sb_clock):
    assert _post(rest, BODY, "k").status_code == 200
    _, other = sandbox_webhook_create(portal=rest.portal, code="otherhook")
    assert "Idempotent-Replayed" not in _post(rest, BODY, "k", code=other)  # another webhook
    assert len(sandbox_records(portal=rest.portal, entity="task")) == 2
    missing = _post(rest, {"id": 999}, "k", method="tasks.task.get")  # another method; fails
    assert missing.status_code == 400 and "Idempotent-Replayed" not in missing
    assert _post(rest, {"id": 999}, "k", method="tasks.task.get").get("Idempotent-Replayed") is None
    sb_clock.advance(24 * 3600 + 1)  # stored for 24 h
    assert "Idempotent-Replayed" not in _post(rest, BODY, "k")
    assert len(sandbox_records(portal=rest.portal, entity="task")) == 3


def test_v2_ignores_the_header(rest):
    for _ in range(2):
        answer = rest.client.post(rest.url("crm.lead.add"), data=json.dumps({"fields": {"TITLE": "a"}}),
                                  content_type="application/json", HTTP_IDEMPOTENCY_KEY="same")
        assert answer.status_code == 200 and "Idempotent-Replayed" not in answer
    assert len(sandbox_records(portal=rest.portal, entity="lead")) == 2
