"""OAuth: the token endpoint (authorization_code, refresh_token with rotation), expired tokens,
calls with `auth=` on v2 and REST 3.0."""

import json

import pytest

from apps.sandbox.selectors import sandbox_counters, sandbox_token_endpoint_calls
from apps.sandbox.services import (
    sandbox_expire_tokens,
    sandbox_oauth_client_create,
    sandbox_oauth_code_issue,
    sandbox_oauth_issue,
    sandbox_set_limits,
)

from .conftest import START, sample

pytestmark = pytest.mark.django_db

TOKEN_URL = "/sandbox/oauth/token/"


@pytest.fixture
def app(sb_portal):
    sandbox_set_limits(portal=sb_portal, burst=10_000)
    client_id, secret = sandbox_oauth_client_create(scopes=["crm", "task"])
    return {"client_id": client_id, "client_secret": secret, "portal": sb_portal}


def refresh(client, app, token, secret=None):
    return client.get(TOKEN_URL, {"grant_type": "refresh_token", "client_id": app["client_id"],
                                  "client_secret": secret or app["client_secret"], "refresh_token": token})


def test_authorization_code_exchange(client, app):
    code = sandbox_oauth_code_issue(portal=app["portal"], client_id=app["client_id"])
    answer = client.get(TOKEN_URL, {"grant_type": "authorization_code", "client_id": app["client_id"],
                                    "client_secret": app["client_secret"], "code": code})
    assert answer.status_code == 200
    body = answer.json()
    # only the refresh answer carries `expires` and `user_id` (FACTS §7)
    assert set(body) == set(sample("response_oauth_token_refresh")["body"]) - {"expires", "user_id"}
    assert body["expires_in"] == 3600
    assert body["member_id"] == app["portal"].member_id
    assert body["client_endpoint"] == "http://testserver/sandbox/acme/rest/"
    assert body["domain"] == "testserver"  # the OAuth server, not the portal
    assert body["scope"] == "crm,task"
    assert body["status"] == "L"
    # a code is single-use
    again = client.get(TOKEN_URL, {"grant_type": "authorization_code", "client_id": app["client_id"],
                                   "client_secret": app["client_secret"], "code": code})
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_code_expires_after_30_seconds(client, app, sb_clock):
    code = sandbox_oauth_code_issue(portal=app["portal"], client_id=app["client_id"])
    sb_clock.advance(30)
    answer = client.post(TOKEN_URL, {"grant_type": "authorization_code", "client_id": app["client_id"],
                                     "client_secret": app["client_secret"], "code": code})
    assert answer.json()["error"] == "invalid_grant"


def test_refresh_rotates_and_old_refresh_token_is_rejected(client, app):
    issued = sandbox_oauth_issue(portal=app["portal"], client_id=app["client_id"])
    first = refresh(client, app, issued["refresh_token"])
    assert first.status_code == 200
    pair = first.json()
    assert set(pair) == set(sample("response_oauth_token_refresh")["body"])
    assert pair["expires"] == int(START) + 3600 and pair["user_id"] == 1
    assert pair["refresh_token"] != issued["refresh_token"]
    assert pair["access_token"] != issued["access_token"]
    reused = refresh(client, app, issued["refresh_token"])
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    second = refresh(client, app, pair["refresh_token"])
    assert second.status_code == 200
    assert sandbox_counters(portal=app["portal"])["token_endpoint_calls"] == 3
    assert sandbox_token_endpoint_calls(client_id=app["client_id"]) == 3


@pytest.mark.parametrize("params,status,error", [
    ({"grant_type": "password"}, 400, "invalid_request"),
    ({"grant_type": "refresh_token"}, 400, "invalid_request"),
    ({"grant_type": "refresh_token", "client_id": "", "refresh_token": "y"}, 400, "invalid_request"),
    ({"grant_type": "refresh_token", "client_id": "nobody", "client_secret": "x", "refresh_token": "y"}, 401,
     "invalid_client"),
    ({"grant_type": "refresh_token", "client_secret": "wrong", "refresh_token": "y"}, 401, "invalid_client"),
    ({"grant_type": "refresh_token", "refresh_token": "not-a-token"}, 400, "invalid_grant"),
    ({"grant_type": "authorization_code", "code": "not-a-code"}, 400, "invalid_grant"),
])
def test_token_endpoint_errors(client, app, params, status, error):
    params = {"client_id": app["client_id"], "client_secret": app["client_secret"], **params}
    answer = client.get(TOKEN_URL, params)
    assert answer.status_code == status
    assert answer.json()["error"] == error


def test_token_endpoint_bad_body_is_an_oauth_error(client, app):
    answer = client.post(TOKEN_URL, data="{not json", content_type="application/json")
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"
    assert client.put(TOKEN_URL).status_code == 405


def test_refresh_token_of_other_client_is_invalid_grant(client, app):
    issued = sandbox_oauth_issue(portal=app["portal"], client_id=app["client_id"])
    other_id, other_secret = sandbox_oauth_client_create()
    answer = client.get(TOKEN_URL, {"grant_type": "refresh_token", "client_id": other_id,
                                    "client_secret": other_secret, "refresh_token": issued["refresh_token"]})
    assert answer.json()["error"] == "invalid_grant"
    assert refresh(client, app, issued["refresh_token"]).status_code == 200  # still unused


def test_v2_call_with_auth_in_query_body_and_form(client, app):
    token = sandbox_oauth_issue(portal=app["portal"], client_id=app["client_id"])["access_token"]
    by_query = client.get(f"/sandbox/acme/rest/crm.lead.list?auth={token}")
    assert by_query.status_code == 200 and by_query.json()["total"] == 0
    by_json = client.post("/sandbox/acme/rest/crm.lead.add.json", data=json.dumps(
        {"auth": token, "fields": {"TITLE": "oauth lead"}}), content_type="application/json")
    assert by_json.json()["result"] == 1
    by_form = client.post("/sandbox/acme/rest/crm.lead.get", {"auth": token, "id": 1})
    assert by_form.json()["result"]["TITLE"] == "oauth lead"
    assert "AUTH" not in by_form.json()["result"]


def test_app_scopes_apply(client, app):
    token = sandbox_oauth_issue(portal=app["portal"], client_id=app["client_id"])["access_token"]
    answer = client.get(f"/sandbox/acme/rest/user.current?auth={token}")
    assert answer.status_code == 403 and answer.json()["error"] == "insufficient_scope"


def test_expired_token_then_refresh_and_retry(client, app, sb_clock):
    issued = sandbox_oauth_issue(portal=app["portal"], client_id=app["client_id"])
    url = f"/sandbox/acme/rest/crm.lead.list?auth={issued['access_token']}"
    assert client.get(url).status_code == 200
    sb_clock.advance(3600)
    expired = client.get(url)
    assert expired.status_code == 401
    assert expired.json() == {"error": "expired_token", "error_description": "The access token provided has expired."}
    fresh = refresh(client, app, issued["refresh_token"]).json()
    assert client.get(f"/sandbox/acme/rest/crm.lead.list?auth={fresh['access_token']}").status_code == 200


def test_expire_switch_and_portal_token_lifetime(client, app, sb_clock):
    sandbox_set_limits(portal=app["portal"], token_lifetime=5)
    issued = sandbox_oauth_issue(portal=app["portal"], client_id=app["client_id"])
    assert issued["expires_in"] == 5
    url = f"/sandbox/acme/rest/server.time?auth={issued['access_token']}"
    assert client.get(url).status_code == 200
    assert sandbox_expire_tokens(portal=app["portal"]) == 1
    assert client.get(url).json()["error"] == "expired_token"
    pair = refresh(client, app, issued["refresh_token"]).json()
    assert pair["expires_in"] == 5
    url = f"/sandbox/acme/rest/server.time?auth={pair['access_token']}"
    sb_clock.advance(4.9)
    assert client.get(url).status_code == 200
    sb_clock.advance(0.1)
    assert client.get(url).status_code == 401


def test_token_of_another_portal_is_no_auth(client, app):
    from apps.sandbox.services import sandbox_portal_ensure

    other = sandbox_portal_ensure(slug="other")
    token = sandbox_oauth_issue(portal=other, client_id=app["client_id"])["access_token"]
    answer = client.get(f"/sandbox/acme/rest/server.time?auth={token}")
    assert answer.status_code == 401 and answer.json()["error"] == "NO_AUTH_FOUND"


def test_rest3_oauth_auth_in_json_body(client, app):
    # The app's scope `task` is the v2 one; REST 3.0 tasks.task.* need `tasks` (FACTS §1).
    token = sandbox_oauth_issue(portal=app["portal"], client_id=app["client_id"])["access_token"]
    refused = client.post("/sandbox/acme/rest/api/tasks.task.list", data=json.dumps({"auth": token}),
                          content_type="application/json")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "BITRIX_REST_V3_EXCEPTION_INSUFFICIENTSCOPEEXCEPTION"
    tasks_app, _ = sandbox_oauth_client_create(scopes=["tasks"])
    token = sandbox_oauth_issue(portal=app["portal"], client_id=tasks_app)["access_token"]
    answer = client.post("/sandbox/acme/rest/api/tasks.task.add", data=json.dumps(
        {"auth": token, "fields": {"title": "via oauth", "creatorId": 1, "responsibleId": 2}}),
        content_type="application/json")
    assert answer.status_code == 200, answer.content
    assert answer.json()["result"]["item"]["responsibleId"] == 2
    missing = client.post("/sandbox/acme/rest/api/tasks.task.get", data=json.dumps({"id": 1}),
                          content_type="application/json")
    assert missing.status_code == 401
    assert missing.json() == {"error": {"code": "NO_AUTH_FOUND", "message": "Wrong authorization data"}}
