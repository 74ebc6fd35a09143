"""Audit entries written by the real services keep error codes readable and hold no secret."""

import json

import pytest

from apps.audit import registry
from apps.audit.models import AuditEntry
from apps.audit.services import audit_record, audit_verify
from apps.portals.services import portal_upsert

pytestmark = pytest.mark.django_db

CANARIES = {
    "webhook_code": "CANARYwebhookQ7x2b9",
    "access_token": "CANARYaccessK4m8z1",
    "refresh_token": "CANARYrefreshP9w3c5",
    "client_secret": "CANARYclientR5t7n2",
    "application_token": "CANARYappV6b1q8",
}
OAUTH_CODE = "CANARYoauthH2q8j4"
AGENT_TOKEN = "CANARYagentY0w4d6"


def stored_text() -> str:
    rows = AuditEntry.objects.values_list("action", "actor", "portal", "data")
    return json.dumps([list(map(str, r[:3])) + [r[3]] for r in rows])


def assert_no_canary():
    text = stored_text()
    found = [c for c in [*CANARIES.values(), OAUTH_CODE, AGENT_TOKEN] if c in text]
    assert found == [], text


def test_credential_broken_keeps_its_error_code(db):
    from apps.bitrix.oauth import credential_mark_broken

    portal, _ = portal_upsert(slug="acme", base_url="https://acme.bitrix24.com", auth_mode="webhook",
                              secrets={"webhook_code": CANARIES["webhook_code"]}, fields={"webhook_user_id": "1"})
    credential_mark_broken(portal_id=portal.pk, code="NO_AUTH_FOUND", detail="Wrong authorization data")
    entry = AuditEntry.objects.get(action=registry.CREDENTIAL_BROKEN)
    assert entry.data == {"from": "ok", "to": "broken", "code": "NO_AUTH_FOUND",
                          "detail": "Wrong authorization data"}
    assert entry.chain == "portal:acme"
    assert_no_canary()
    assert audit_verify().ok


@pytest.mark.parametrize("code", ["invalid_grant", "expired_token", "WRONG_AUTH_TYPE", "invalid_client"])
def test_every_credential_broken_code_is_readable(db, code):
    entry = audit_record(action=registry.CREDENTIAL_BROKEN, portal="acme", data={"code": code})
    assert AuditEntry.objects.get(pk=entry.pk).data == {"code": code}


def test_portal_services_with_canary_secrets_leave_none_in_the_log(db):
    portal_upsert(slug="acme", base_url="https://acme.bitrix24.com", auth_mode="webhook",
                  secrets={"webhook_code": CANARIES["webhook_code"],
                           "application_token": CANARIES["application_token"]},
                  fields={"webhook_user_id": "1"})
    portal_upsert(slug="beta", base_url="https://beta.bitrix24.com", auth_mode="oauth",
                  secrets={k: v for k, v in CANARIES.items() if k != "webhook_code"})
    entries = list(AuditEntry.objects.filter(action=registry.PORTAL_CHANGED))
    assert len(entries) == 2
    assert sorted(entries[1].data["secrets_set"]) == ["access_token", "application_token", "client_secret",
                                                      "refresh_token"]  # names stay readable
    assert_no_canary()


def test_canaries_in_every_position_of_audit_data_are_masked(db):
    wh, at, rt, cs, app = (CANARIES[k] for k in ("webhook_code", "access_token", "refresh_token", "client_secret",
                                                 "application_token"))
    data = {
        **CANARIES,
        "code": OAUTH_CODE,
        "token": AGENT_TOKEN,
        "request": {"url": f"https://acme.bitrix24.com/rest/1/{wh}/crm.lead.add.json?auth={at}",
                    "headers": {"Authorization": f"Bearer {AGENT_TOKEN}"},
                    "callback": f"https://cp.example/oauth/callback?code={OAUTH_CODE}&state=s"},
        "answers": [f'{{"access_token":"{at}","refresh_token":"{rt}"}}', {"client_secret": cs},
                    f"event auth[application_token]={app}", f"application_token={app}"],
        "error": {"code": "invalid_grant", "description": f"refresh_token={rt} rejected"},
    }
    entry = audit_record(action=registry.PORTAL_CHANGED, portal="acme", data=data)
    stored = AuditEntry.objects.get(pk=entry.pk).data
    assert stored["error"]["code"] == "invalid_grant"
    assert stored["request"]["callback"] == "https://cp.example/oauth/callback?code=***&state=s"
    assert_no_canary()
    assert audit_verify().ok
