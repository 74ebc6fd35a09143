"""Agent API behaviour: BOLA, listing, idempotency, dry run, capabilities, methods, OpenAPI, secrets."""

import json
import re
import uuid

import pytest
from jsonschema import Draft202012Validator

from apps.audit.models import AuditEntry
from apps.plans.models import Plan
from tests.conftest import WEBHOOK_CODE

pytestmark = pytest.mark.django_db
PLANS = "/api/v1/plans"
WRITE = {"portal": "acme", "method": "crm.lead.add", "params": {"fields": {"TITLE": "x"}}}


def test_other_agents_plan_is_404_everywhere(api, agent, make_agent, portal):
    mine = api.post(PLANS, WRITE, token=agent.token).json()
    intruder = make_agent("agent-b", portal=portal)
    assert api.get(f"{PLANS}/{mine['id']}", token=intruder.token).status_code == 404
    assert api.post(f"{PLANS}/{mine['id']}/cancel", token=intruder.token).status_code == 404
    assert api.get(PLANS, token=intruder.token).json()["plans"] == []
    assert Plan.objects.get(pk=mine["id"]).status == "pending_approval"
    # the answer is the same as for a plan that does not exist
    ghost = api.get(f"{PLANS}/{uuid.uuid4()}", token=intruder.token)
    theirs = api.get(f"{PLANS}/{mine['id']}", token=intruder.token)
    assert ghost.json()["error"]["code"] == theirs.json()["error"]["code"] == "not_found"


def test_plan_answer_has_the_contract_fields(api, agent):
    plan = api.post(PLANS, WRITE, token=agent.token).json()
    for field in ["id", "status", "risk", "portal", "steps", "approvals_required", "approvals", "expires_at",
                  "result", "error"]:
        assert field in plan
    assert plan["steps"] == [{"name": "call", "method": "crm.lead.add", "params": {"fields": {"TITLE": "x"}}}]
    assert plan["expires_at"] is not None


def test_list_newest_first_with_cursor_and_filters(api, agent):
    ids = [api.post(PLANS, {**WRITE, "reason": str(i)}, token=agent.token).json()["id"] for i in range(5)]
    page1 = api.get(PLANS, token=agent.token, limit=2).json()
    page2 = api.get(PLANS, token=agent.token, limit=2, cursor=page1["next_cursor"]).json()
    page3 = api.get(PLANS, token=agent.token, limit=2, cursor=page2["next_cursor"]).json()
    seen = [p["id"] for p in page1["plans"] + page2["plans"] + page3["plans"]]
    assert seen == list(reversed(ids))
    assert page3["next_cursor"] is None
    assert api.get(PLANS, token=agent.token, status="succeeded").json()["plans"] == []
    assert len(api.get(PLANS, token=agent.token, status="pending_approval").json()["plans"]) == 5
    assert api.get(PLANS, token=agent.token, portal="elsewhere").json()["plans"] == []


def test_cancel(api, agent):
    plan = api.post(PLANS, WRITE, token=agent.token).json()
    cancelled = api.post(f"{PLANS}/{plan['id']}/cancel", token=agent.token)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = api.post(f"{PLANS}/{plan['id']}/cancel", token=agent.token)
    assert again.status_code == 409


def test_idempotent_replay_returns_the_same_plan(api, agent):
    first = api.post(PLANS, WRITE, token=agent.token, headers={"Idempotency-Key": "k-1"})
    second = api.post(PLANS, WRITE, token=agent.token, headers={"Idempotency-Key": "k-1"})
    third = api.post(PLANS, {**WRITE, "idempotency_key": "k-1"}, token=agent.token)
    assert first.status_code == 201
    assert second.status_code == 200 and second["Idempotent-Replayed"] == "true"
    assert first.json()["id"] == second.json()["id"] == third.json()["id"]
    assert Plan.objects.count() == 1


def test_one_agents_key_never_reveals_another_agents_plan(api, agent, make_agent, portal):
    other = make_agent("agent-b", portal=portal)
    mine = api.post(PLANS, WRITE, token=agent.token, headers={"Idempotency-Key": "shared"}).json()
    theirs = api.post(PLANS, WRITE, token=other.token, headers={"Idempotency-Key": "shared"})
    assert theirs.status_code == 201 and theirs.json()["id"] != mine["id"]


def test_failed_submission_does_not_keep_the_key(api, agent):
    refused = api.post(PLANS, {**WRITE, "method": "im.message.add"}, token=agent.token,
                       headers={"Idempotency-Key": "retry-me"})
    assert refused.status_code == 403
    ok = api.post(PLANS, WRITE, token=agent.token, headers={"Idempotency-Key": "retry-me"})
    assert ok.status_code == 201


def test_header_and_body_keys_must_agree(api, agent):
    response = api.post(PLANS, {**WRITE, "idempotency_key": "a"}, token=agent.token, headers={"Idempotency-Key": "b"})
    assert response.status_code == 400 and response.json()["error"]["field"] == "idempotency_key"


def test_dry_run_creates_nothing(api, agent):
    before = AuditEntry.objects.count()
    answer = api.post(f"{PLANS}?dry_run=1", {**WRITE, "method": "crm.lead.delete", "params": {"id": 1}},
                      token=agent.token)
    assert answer.status_code == 200
    body = answer.json()
    assert body["dry_run"] is True and body["risk"] == "destructive" and body["approvals_required"] == 2
    assert body["would_be"] == "pending_approval" and "core" in body["packs"]
    refused = api.post(f"{PLANS}?dry_run=1", {**WRITE, "method": "im.message.add"}, token=agent.token).json()
    assert refused["allowed"] is False and refused["outcome"] == "not_granted"
    assert Plan.objects.count() == 0 and AuditEntry.objects.count() == before


def test_capabilities(api, agent):
    body = api.get("/api/v1/capabilities", token=agent.token).json()
    assert body["agent"] == "agent-a"
    [portal] = body["portals"]
    assert portal["portal"] == "acme"
    [grant] = portal["grants"]
    assert grant["pack"] == "core"
    assert grant["policy"] == {"read": "auto", "write": "approve", "destructive": "approve2"}
    assert any(p.startswith("crm.") for p in grant["patterns"])


def test_method_description(api, agent):
    body = api.get("/api/v1/methods/crm.deal.productrows.set", token=agent.token, portal="acme").json()
    assert body["risk"] == "destructive" and body["granted"] is True and body["policy"] == "approve2"
    other = api.get("/api/v1/methods/im.message.add", token=agent.token, portal="acme").json()
    assert other["granted"] is False and "comms" in other["packs"]
    assert api.get("/api/v1/methods/crm.deal.get", token=agent.token).status_code == 400
    bad = api.get("/api/v1/methods/crm%20deal", token=agent.token, portal="acme")
    assert bad.status_code == 400


def test_openapi_describes_what_is_served(client):
    from django.urls import get_resolver

    doc = client.get("/api/v1/openapi.json").json()
    assert doc["openapi"] == "3.1.0"
    served = {"/api/v1/" + str(p.pattern) for p in get_resolver().url_patterns
              if str(p.pattern) == "api/v1/" for p in p.url_patterns}
    documented = {re.sub(r"\{(\w+)\}", lambda m: "<path:name>" if m[1] == "name" else f"<str:{m[1]}>", path)
                  for path in doc["paths"] if path.startswith("/api/v1/")}
    assert served == documented
    Draft202012Validator.check_schema(doc["components"]["schemas"]["SubmitPlan"])
    codes = set(doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"])
    assert {"invalid_request", "unauthenticated", "not_granted", "denied_by_policy", "not_found",
            "idempotency_in_progress", "too_large", "idempotency_mismatch", "rate_limited"} <= codes


def test_plan_answers_validate_against_the_documented_schema(api, agent, client):
    doc = client.get("/api/v1/openapi.json").json()
    plan = api.post(PLANS, WRITE, token=agent.token).json()
    Draft202012Validator({**doc["components"]["schemas"]["Plan"], "$defs": {}}).validate(plan)


def test_secrets_never_in_api_answers_or_audit(api, agent, portal, client):
    secrets = [WEBHOOK_CODE, "app-token-secret", agent.token]
    answers = [
        api.post(PLANS, WRITE, token=agent.token).content,
        api.get(PLANS, token=agent.token).content,
        api.get("/api/v1/capabilities", token=agent.token).content,
        api.get("/api/v1/methods/crm.lead.add", token=agent.token, portal="acme").content,
    ]
    audit = json.dumps([[e.action, e.actor, e.data] for e in AuditEntry.objects.all()])
    for secret in secrets:
        assert all(secret.encode() not in body for body in answers)
        assert secret not in audit


def test_secrets_are_ciphertext_in_the_database(portal):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT webhook_code, application_token FROM portals_credential")
        row = cursor.fetchone()
    assert WEBHOOK_CODE not in row[0] and row[0].startswith("gAAAAA")
    portal.credential.refresh_from_db()
    assert portal.credential.webhook_code == WEBHOOK_CODE


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "broker": "ok"}
