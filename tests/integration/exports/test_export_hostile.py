"""Hostile requests on the export endpoints (the pattern of tests/integration/core/
test_hostile_corpus.py): a JSON 4xx with a code the OpenAPI document lists, never a 5xx, and no
export, plan, idempotency record or audit entry written."""

import json

import pytest

from apps.audit.models import AuditEntry
from apps.exports.models import Export
from apps.plans.models import IdempotencyRecord, Plan
from apps.plans.openapi import served_error_codes
from tests.integration.core.test_hostile_corpus import Case, raw, short

pytestmark = pytest.mark.django_db

EXPORTS = "/api/v1/exports"
EXPORT_ID = "0b7c5e2a-3f6d-4c1e-9a8b-2d4f6e8a0c1e"


def body(**fields) -> bytes:
    return json.dumps({"portal": "acme", "method": "crm.lead.list", **fields}).encode()


CASES = [
    # what is exportable
    Case("not-a-list", body=body(method="crm.lead.get"), status=400, field="method"),
    Case("a-write", body=body(method="crm.lead.add"), status=400, field="method"),
    Case("a-delete", body=body(method="crm.lead.delete"), status=400, field="method"),
    Case("unknown-list", body=body(method="crm.nothing.list"), status=400, field="method"),
    Case("batch", body=body(method="batch"), status=400, field="method"),
    Case("rest3-only", body=body(method="main.eventlog.list"), status=400, field="method"),
    Case("method-result-ref", body=body(method="$result[a]"), status=400, field="method"),
    Case("method-xml", body=body(method="crm.lead.list.xml"), status=400, field="method"),
    Case("method-number", body=body(method=5), status=400, field="method"),
    Case("method-missing", body=raw('{"portal": "acme"}'), status=400, field="method"),
    Case("method-empty", body=body(method=""), status=400, field="method"),
    # the request's shape
    Case("portal-missing", body=raw('{"method": "crm.lead.list"}'), status=400, field="portal"),
    Case("portal-odd", body=body(portal="ac me"), status=400, field="portal"),
    Case("portal-unknown", body=body(portal="nowhere"), status=404, field="portal"),
    Case("select-string", body=body(select="ID"), status=400, field="select"),
    Case("select-numbers", body=body(select=[1, 2]), status=400, field="select"),
    Case("select-empty-name", body=body(select=[""]), status=400, field="select"),
    Case("select-null", body=body(select=None), status=400, field="select"),
    Case("filter-null", body=body(filter=None), status=400, field="filter"),
    Case("order-null", body=body(order=None), status=400, field="order"),
    Case("key-null", body=body(idempotency_key=None), status=400, field="idempotency_key"),
    Case("key-number", body=body(idempotency_key=5), status=400, field="idempotency_key"),
    Case("select-huge", body=body(select=["F"] * 501), status=400, field="select"),
    Case("filter-list", body=body(filter=[1]), status=400, field="filter"),
    Case("filter-string", body=body(filter="ID>5"), status=400, field="filter"),
    Case("order-list", body=body(order=["ID"]), status=400, field="order"),
    Case("order-odd", body=body(order={"ID": "sideways"}), status=400, field="order"),
    Case("order-nested", body=body(order={"ID": {"x": 1}}), status=400, field="order"),
    Case("format-xml", body=body(format="xml"), status=400, field="format"),
    Case("format-null", body=body(format=None), status=400, field="format"),
    Case("reason-number", body=body(reason=5), status=400, field="reason"),
    Case("unknown-field", body=body(params={}), status=400, field="params"),
    Case("key-control", body=body(idempotency_key="a\x01b"), status=400, field="idempotency_key"),
    Case("two-keys", body=body(), headers={"Idempotency-Key": "a, b"}, status=400, field="Idempotency-Key"),
    Case("keys-differ", body=body(idempotency_key="a"), headers={"Idempotency-Key": "b"}, status=400,
         field="idempotency_key"),
    Case("body-array", body=raw("[1]"), status=400, field="body"),
    Case("body-blank", body=b"  ", status=400, field="body"),
    Case("body-not-json", body=raw("{portal"), status=400, field="body"),
    Case("body-dup-key", body=raw('{"portal": "acme", "method": "crm.lead.list", "method": "crm.lead.add"}'),
         status=400, field="method"),
    Case("body-nul", body=raw('{"portal": "acme", "method": "crm.lead.list", "filter": {"TITLE": "a\\u0000"}}'),
         status=400, field="filter.TITLE"),
    Case("body-deep", body=raw('{"portal": "acme", "method": "crm.lead.list", "filter": ' + "[" * 80 + "]" * 80
                               + "}"), status=400),
    Case("form-encoded", body=b"portal=acme", content_type="application/x-www-form-urlencoded", status=415),
    Case("list-limit", method="GET", path=f"{EXPORTS}?limit=0", status=400, field="limit"),
    Case("list-limit-text", method="GET", path=f"{EXPORTS}?limit=x", status=400, field="limit"),
    Case("list-control", method="GET", path=f"{EXPORTS}?limit=%01", status=400),
]
for export_id in ["not-a-uuid", "00000000-0000-0000-0000-000000000000", EXPORT_ID, "%00", "1", "%ED%A0%80",
                  "{" + EXPORT_ID + "}"]:
    CASES += [Case(f"export-id-{export_id[:20]}", method="GET", path=f"{EXPORTS}/{export_id}"),
              Case(f"file-id-{export_id[:20]}", method="GET", path=f"{EXPORTS}/{export_id}/file"),
              Case(f"cancel-id-{export_id[:20]}", method="POST", path=f"{EXPORTS}/{export_id}/cancel")]
NOT_ALLOWED = {
    EXPORTS: (["PUT", "PATCH", "DELETE"], "GET, POST"),
    f"{EXPORTS}/{EXPORT_ID}": (["POST", "PUT", "DELETE", "PATCH"], "GET"),
    f"{EXPORTS}/{EXPORT_ID}/file": (["POST", "PUT", "DELETE"], "GET"),
    f"{EXPORTS}/{EXPORT_ID}/cancel": (["GET", "PUT", "DELETE", "PATCH"], "POST"),
}
for path, (methods, allow) in NOT_ALLOWED.items():
    CASES += [Case(f"405-{m}-{short(path)}", method=m, path=path, status=405, allow=allow) for m in methods]
for path in [f"{EXPORTS}/", f"{EXPORTS}/{EXPORT_ID}/", f"{EXPORTS}/{EXPORT_ID}/file/", f"{EXPORTS}/{EXPORT_ID}/x",
             f"{EXPORTS}/{EXPORT_ID}/cancel/"]:
    CASES.append(Case(f"unknown-{short(path)}", method="GET", path=path, status=404))
for case in CASES:
    case.path = case.path if case.path != "/api/v1/plans" else EXPORTS


def test_case_ids_are_unique():
    assert len({case.id for case in CASES}) == len(CASES) > 60


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_export_request_is_a_json_4xx_and_writes_nothing(client, agent, case):
    def counts():
        return (Export.objects.count(), Plan.objects.count(), IdempotencyRecord.objects.count(),
                AuditEntry.objects.count())

    before = counts()
    extra = {"HTTP_AUTHORIZATION": f"Bearer {agent.token}"}
    for key, value in case.headers.items():
        extra["HTTP_" + key.upper().replace("-", "_")] = value
    response = client.generic(case.method, case.path, case.body or b"", content_type=case.content_type, **extra)
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    assert response["Content-Type"] == "application/json"
    error = json.loads(response.content)["error"]
    assert error["code"] in served_error_codes() and error["message"]
    if case.status is not None:
        assert response.status_code == case.status, error
    if case.field is not None:
        assert error.get("field") == case.field, error
    if case.allow is not None:
        assert response["Allow"] == case.allow
    assert counts() == before


def test_a_read_the_grants_do_not_cover_is_refused_like_a_plan(api, portal, make_agent):
    agent = make_agent("no-crm", portal=portal, packs=("comms",))
    response = api.post(EXPORTS, {"portal": "acme", "method": "crm.lead.list"}, token=agent.token)
    assert response.status_code == 403 and response.json()["error"]["code"] == "not_granted"
    assert response.json()["error"]["pack"] == "core"
    denied = make_agent("denied", portal=portal, read="deny")
    response = api.post(EXPORTS, {"portal": "acme", "method": "crm.lead.list"}, token=denied.token)
    assert response.status_code == 403 and response.json()["error"]["code"] == "denied_by_policy"
    assert Export.objects.count() == 0 and Plan.objects.count() == 0


def test_no_token_is_401(client):
    response = client.get(EXPORTS)
    assert response.status_code == 401 and response.json()["error"]["code"] == "unauthenticated"
