"""The audit secret filter: secrets masked in every position, error codes kept readable."""

import json

import pytest

from apps.audit.redaction import MASK, scrub, scrub_text

WEBHOOK = "CANARYwebhook7Q2x9"
ACCESS = "CANARYaccess4k8Lm2"
REFRESH = "CANARYrefresh9Pz3"
CLIENT_SECRET = "CANARYclientsecretR5t"
APP_TOKEN = "CANARYapptoken6Vb1"
OAUTH_CODE = "CANARYoauthcode2Hq8"
AGENT_TOKEN = "CANARYagenttoken0Yw4"
CANARIES = (WEBHOOK, ACCESS, REFRESH, CLIENT_SECRET, APP_TOKEN, OAUTH_CODE, AGENT_TOKEN)


def leaks(value) -> list[str]:
    text = json.dumps(value)
    return [c for c in CANARIES if c in text]


@pytest.mark.parametrize("key, secret", [
    ("webhook_code", WEBHOOK), ("access_token", ACCESS), ("refresh_token", REFRESH),
    ("client_secret", CLIENT_SECRET), ("application_token", APP_TOKEN), ("auth", ACCESS), ("AUTH_ID", ACCESS),
    ("REFRESH_ID", REFRESH), ("token", AGENT_TOKEN), ("agent_token", AGENT_TOKEN), ("password", AGENT_TOKEN),
    ("oauth_code", OAUTH_CODE), ("authorization_code", OAUTH_CODE), ("Authorization", f"Bearer {AGENT_TOKEN}"),
    ("webhook_url", f"https://acme.bitrix24.com/rest/1/{WEBHOOK}/"),
])
def test_secret_keys_are_masked_whatever_the_value(key, secret):
    for value in (secret, {"nested": secret}, [secret], 12345):
        assert scrub({key: value}) == {key: MASK}


@pytest.mark.parametrize("text", [
    f"https://acme.bitrix24.com/rest/1/{WEBHOOK}/crm.lead.add.json",
    f"https://acme.bitrix24.com/rest/api/1/{WEBHOOK}/tasks.task.get",
    f"https://acme.example/callback?code={OAUTH_CODE}&state=xyz&domain=acme.bitrix24.com",
    f"https://oauth.bitrix24.tech/oauth/token/?grant_type=refresh_token&client_secret={CLIENT_SECRET}"
    f"&refresh_token={REFRESH}",
    f"https://acme.bitrix24.com/rest/user.current?auth={ACCESS}",
    f"POST /rest/event.bind auth={ACCESS}; application_token={APP_TOKEN}",
    f"Authorization: Bearer {AGENT_TOKEN}",
    f'answer body {{"access_token": "{ACCESS}", "refresh_token": "{REFRESH}", "expires_in": 3600}}',
    f'{{"application_token":"{APP_TOKEN}"}}',
    f"AUTH_ID={ACCESS}&REFRESH_ID={REFRESH}&member_id=abc",
    f"event=ONCRMLEADADD&auth[application_token]={APP_TOKEN}&auth[access_token]={ACCESS}",
    f"auth%5Bapplication_token%5D={APP_TOKEN}&auth%5Brefresh_token%5D={REFRESH}",
])
def test_secrets_inside_strings_are_masked_in_any_position(text):
    for value in ({"detail": text}, {"list": [text]}, {"deep": {"deeper": [{"x": text}]}}, {text: 1}):
        cleaned = scrub(value)
        assert leaks(cleaned) == [], cleaned


def test_non_secret_context_survives_in_strings():
    cleaned = scrub_text(f"https://acme.example/callback?code={OAUTH_CODE}&state=xyz&domain=acme.bitrix24.com")
    assert cleaned == "https://acme.example/callback?code=***&state=xyz&domain=acme.bitrix24.com"
    assert scrub_text("https://acme.bitrix24.com/rest/1/abc/x.json") == "https://acme.bitrix24.com/rest/1/***/x.json"


@pytest.mark.parametrize("code", ["invalid_grant", "expired_token", "NO_AUTH_FOUND", "CREDENTIAL_BROKEN",
                                  "WRONG_AUTH_TYPE", "invalid_client", "HTTP_401", "QUERY_LIMIT_EXCEEDED",
                                  "ERROR_METHOD_NOT_FOUND", "bitrix.auth-failed", 401])
def test_error_codes_stay_readable(code):
    assert scrub({"code": code}) == {"code": code}
    assert scrub({"error": {"code": code, "description": "x"}}) == {"error": {"code": code, "description": "x"}}


@pytest.mark.parametrize("value", [OAUTH_CODE, "e5a6b1c4006d8f6b00689d2a00000001000007a1e3c2d3f1",
                                   "a" * 65, "x y", {"a": 1}, ["a"]])
def test_a_code_that_is_not_an_error_code_is_masked(value):
    assert scrub({"code": value}) == {"code": MASK}


def test_ordinary_fields_are_untouched():
    data = {"agent": "agent-a", "pack": "crm", "content_hash": "ab" * 32, "idempotency_key": "k-1",
            "secrets_set": ["application_token", "webhook_code"], "risk": 2.5, "ok": True, "none": None,
            "methods": ["crm.lead.add"], "member_id": "m-1"}
    assert scrub(data) == data
