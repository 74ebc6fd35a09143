"""Every error code of the API contract, each through a real request."""

import json

import pytest

from apps.core.exceptions import InvalidRequest
from tests.conftest import error_code

pytestmark = pytest.mark.django_db

PLANS = "/api/v1/plans"


def read_call(portal="acme"):
    return {"portal": portal, "method": "crm.lead.list", "params": {"select": ["ID"]}}


def test_unauthenticated_without_token(api):
    response = api.get(PLANS, token=None)
    assert response.status_code == 401
    assert error_code(response) == "unauthenticated"
    assert response["Content-Type"] == "application/json"


@pytest.mark.parametrize("header", ["Bearer nope", "Basic abc", "Bearer ", "bearer", "Bearer a,Bearer b"])
def test_unauthenticated_with_bad_header(client, header):
    response = client.get(PLANS, HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert error_code(response) == "unauthenticated"


def test_revoked_token_is_unauthenticated(api, agent):
    from apps.agents.services import agent_revoke

    agent_revoke(agent=agent)
    assert api.get(PLANS, token=agent.token).status_code == 401


@pytest.mark.parametrize(
    "body, field",
    [
        ({"method": "crm.lead.list"}, "portal"),
        ({"portal": "acme"}, "method"),
        ({"portal": "acme", "method": "crm.lead.list", "steps": [{"name": "a", "method": "x"}]}, "steps"),
        ({"portal": "acme", "method": 5}, "method"),
        ({"portal": "acme", "method": "crm.lead.list", "params": []}, "params"),
        ({"portal": "acme", "method": "crm.lead.list", "surprise": 1}, "surprise"),
        ({"portal": "acme", "steps": []}, "steps"),
        ({"portal": "acme", "steps": [{"name": "a b", "method": "crm.lead.list"}]}, "steps.0.name"),
        ({"portal": "acme", "steps": [{"name": "a", "method": "crm.lead.list"},
                                      {"name": "a", "method": "user.current"}]}, "steps"),
        ({"portal": "acme", "method": "crm.lead.list", "idempotency_key": "tab\tkey"}, "idempotency_key"),
        ({"portal": "acme", "method": "crm.lead.list", "callback_url": "ftp://x"}, "callback_url"),
        ({"portal": "acme", "method": "crm lead list"}, "method"),
    ],
)
def test_invalid_request_names_the_field(api, agent, body, field):
    response = api.post(PLANS, body, token=agent.token)
    assert response.status_code == 400, response.content
    assert error_code(response) == "invalid_request"
    assert response.json()["error"]["field"] == field


@pytest.mark.parametrize("raw, field", [("{", "body"), ("[1, 2]", "body"), (" ", "body"), ("NaN", "body"),
                                        ('{"portal": NaN}', "portal"), ("\xff\xfe", "body")])
def test_invalid_json_is_400(api, agent, raw, field):
    response = api.post(PLANS, token=agent.token, raw=raw.encode("latin-1"))
    assert response.status_code == 400
    assert error_code(response) == "invalid_request"
    assert response.json()["error"]["field"] == field


def test_wrong_content_type_is_415(api, agent):
    response = api.post(PLANS, token=agent.token, raw="portal=acme", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert error_code(response) == "unsupported_media_type"


def test_more_than_50_steps_is_400(api, agent):
    steps = [{"name": f"s{i}", "method": "crm.lead.get", "params": {"id": i}} for i in range(51)]
    response = api.post(PLANS, {"portal": "acme", "steps": steps}, token=agent.token)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "steps"


def test_not_granted_names_the_pack(api, agent):
    response = api.post(PLANS, {"portal": "acme", "method": "im.message.add", "params": {}}, token=agent.token)
    assert response.status_code == 403
    body = response.json()["error"]
    assert body["code"] == "not_granted"
    assert body["pack"] == "comms"


def test_denied_by_policy(api, make_agent, portal):
    agent = make_agent("strict", portal=portal, write="deny")
    response = api.post(PLANS, {"portal": "acme", "method": "crm.lead.add", "params": {"fields": {}}},
                        token=agent.token)
    assert response.status_code == 403
    assert error_code(response) == "denied_by_policy"


def test_unknown_portal_is_404(api, agent):
    response = api.post(PLANS, read_call(portal="nowhere"), token=agent.token)
    assert response.status_code == 404
    assert error_code(response) == "not_found"


def test_portal_without_grants_looks_like_no_portal(api, make_agent, portal):
    agent = make_agent("nogrants")  # no grants anywhere
    response = api.post(PLANS, read_call(), token=agent.token)
    assert response.status_code == 404


def test_unknown_plan_is_404(api, agent):
    for plan_id in ["00000000-0000-0000-0000-000000000000", "not-a-uuid", "1"]:
        response = api.get(f"{PLANS}/{plan_id}", token=agent.token)
        assert response.status_code == 404
        assert error_code(response) == "not_found"


def test_body_over_256_kib_is_413(api, agent):
    body = {"portal": "acme", "method": "crm.lead.add", "params": {"fields": {"COMMENTS": "x" * (256 * 1024)}}}
    response = api.post(PLANS, body, token=agent.token)
    assert response.status_code == 413
    assert error_code(response) == "too_large"


def test_body_just_under_limit_is_accepted(api, agent):
    filler = "x" * (255 * 1024)
    response = api.post(PLANS, {"portal": "acme", "method": "crm.lead.add",
                                "params": {"fields": {"COMMENTS": filler}}}, token=agent.token)
    assert response.status_code == 201


def test_idempotency_mismatch_is_422(api, agent):
    headers = {"Idempotency-Key": "order-42"}
    first = api.post(PLANS, read_call(), token=agent.token, headers=headers)
    assert first.status_code == 201
    other = {**read_call(), "params": {"select": ["TITLE"]}}
    response = api.post(PLANS, other, token=agent.token, headers=headers)
    assert response.status_code == 422
    assert error_code(response) == "idempotency_mismatch"


def test_idempotency_in_progress_is_409(api, agent):
    from apps.core.canonical import sha256_hex
    from apps.plans.models import IdempotencyRecord

    body = read_call()
    IdempotencyRecord.objects.create(agent=agent, key="busy", request_hash=sha256_hex(body))
    response = api.post(PLANS, body, token=agent.token, headers={"Idempotency-Key": "busy"})
    assert response.status_code == 409
    assert error_code(response) == "idempotency_in_progress"


def test_rate_limited_is_429_with_retry_after(api, agent, settings):
    settings.API_RATE_PER_MINUTE = 3
    from django.core.cache import cache

    cache.clear()
    codes = [api.get(PLANS, token=agent.token).status_code for _ in range(4)]
    assert codes[:3] == [200, 200, 200]
    assert codes[3] == 429
    response = api.get(PLANS, token=agent.token)
    assert error_code(response) == "rate_limited"
    assert 1 <= int(response["Retry-After"]) <= 60


def test_wrong_http_method_is_json_405(api, agent):
    response = api.post("/api/v1/capabilities", {}, token=agent.token)
    assert response.status_code == 405
    assert error_code(response) == "method_not_allowed"


def test_unknown_endpoint_is_json_404(client):
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert json.loads(response.content)["error"]["code"] == "not_found"


@pytest.mark.parametrize("query", ["wait=31", "wait=-1", "wait=abc", "dry_run=maybe"])
def test_bad_query_parameters_are_400(api, agent, query):
    response = api.post(f"{PLANS}?{query}", read_call(), token=agent.token)
    assert response.status_code == 400
    assert error_code(response) == "invalid_request"


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "status=bogus", "cursor=%%%"])
def test_bad_list_parameters_are_400(api, agent, query):
    response = api.client.get(f"{PLANS}?{query}", HTTP_AUTHORIZATION=f"Bearer {agent.token}")
    assert response.status_code == 400
    assert error_code(response) == "invalid_request"


# --- the published document refuses what the server refuses -------------------------------------

VALID = {"portal": "acme", "method": "crm.lead.list", "params": {"select": ["ID"]}}
BODIES = [
    VALID,
    {"portal": "acme", "steps": [{"name": "a", "method": "user.current"}], "reason": "why"},
    {**VALID, "callback_url": "https://cb.example/x", "idempotency_key": "order-42"},
    {**VALID, "callback_url": ""},
    {**VALID, "portal": ""},
    {**VALID, "portal": "a" * 65},
    {**VALID, "portal": "ac me"},
    {**VALID, "steps": [{"name": "a", "method": "user.current"}]},
    {"portal": "acme", "params": {}, "steps": [{"name": "a", "method": "user.current"}]},
    {"portal": "acme"},
    {**VALID, "method": ""},
    {**VALID, "method": "crm lead list"},
    {**VALID, "method": "$result[a]"},
    {**VALID, "params": []},
    {**VALID, "params": {"x": "a\x00b"}},
    {**VALID, "params": {"a\x00": 1}},
    {**VALID, "reason": "\x00"},
    {**VALID, "idempotency_key": "a,b"},
    {**VALID, "idempotency_key": "tab\tkey"},
    {**VALID, "idempotency_key": ""},
    {**VALID, "callback_url": "ftp://x"},
    {**VALID, "surprise": 1},
    {"portal": "acme", "steps": [{"name": f"s{i}", "method": "x.y"} for i in range(51)]},
    {"portal": "acme", "steps": [{"name": "a b", "method": "x.y"}]},
]


@pytest.fixture(scope="module")
def submit_validator():
    from jsonschema import Draft202012Validator
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    from apps.plans.openapi import openapi_document

    doc = openapi_document()
    registry = Registry().with_resource("urn:doc", DRAFT202012.create_resource(doc))
    return Draft202012Validator({"$ref": "urn:doc#/components/schemas/SubmitPlan"}, registry=registry)


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
def test_submit_schema_and_parser_agree(submit_validator, body):
    from apps.plans.schemas import parse_submit

    published_ok = submit_validator.is_valid(body)
    try:
        parse_submit(body, header_key=None)
        parsed_ok = True
    except InvalidRequest:
        parsed_ok = False
    assert published_ok == parsed_ok, (published_ok, list(submit_validator.iter_errors(body))[:1])


def test_list_parameters_are_described_exactly():
    import re

    from apps.plans.openapi import openapi_document

    params = {p["name"]: p["schema"] for p in openapi_document()["paths"]["/api/v1/plans"]["get"]["parameters"]}
    cursor = re.compile(params["cursor"]["pattern"])
    assert cursor.search("") and cursor.search("1764000000000000-" + "0" * 32)
    assert not cursor.search("abc") and not cursor.search("MjAyNnxub3QtYS11dWlk")
    assert "" in params["status"]["enum"]


def test_a_cursor_from_the_api_matches_the_published_pattern(api, agent):
    import re

    from apps.plans.openapi import openapi_document

    for _ in range(3):
        assert api.post(PLANS, read_call(), token=agent.token).status_code == 201
    cursor = api.get(PLANS, token=agent.token, limit=1).json()["next_cursor"]
    params = {p["name"]: p["schema"] for p in openapi_document()["paths"]["/api/v1/plans"]["get"]["parameters"]}
    assert re.search(params["cursor"]["pattern"], cursor)
    page = api.get(PLANS, token=agent.token, limit=5, cursor=cursor).json()
    assert len(page["plans"]) == 2


@pytest.mark.parametrize("cursor", ["1-" + "g" * 32, "123-not-a-uuid", "1-" + "0" * 31, "9" * 18 + "-" + "0" * 32])
def test_crafted_cursor_is_400(api, agent, cursor):
    response = api.get(PLANS, token=agent.token, cursor=cursor)
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "cursor"


@pytest.mark.django_db(transaction=True)
def test_two_idempotency_key_headers_over_real_http_are_refused(live_server, make_agent, portal):
    """A real WSGI server joins repeated headers with a comma; the comma makes the key invalid,
    so two keys can never be mistaken for one."""
    import http.client
    from urllib.parse import urlsplit

    from apps.plans.models import Plan

    agent = make_agent("live", portal=portal)
    url = urlsplit(live_server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    body = json.dumps(read_call()).encode()
    conn.putrequest("POST", PLANS)
    for name, value in [("Authorization", f"Bearer {agent.token}"), ("Content-Type", "application/json"),
                        ("Content-Length", str(len(body))), ("Idempotency-Key", "first"),
                        ("Idempotency-Key", "second")]:
        conn.putheader(name, value)
    conn.endheaders(body)
    response = conn.getresponse()
    answer = json.loads(response.read())
    conn.close()
    assert response.status == 400
    assert answer["error"]["field"] == "Idempotency-Key"
    assert not Plan.objects.exists()


def test_two_authorization_headers_are_refused_even_with_a_valid_token(client, agent):
    response = client.get(PLANS, HTTP_AUTHORIZATION=f"Bearer {agent.token},Bearer {agent.token}")
    assert response.status_code == 401
    assert "exactly one" in response.json()["error"]["message"]
