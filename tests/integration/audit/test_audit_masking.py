"""No secret value enters an audit entry, wherever its key sits in the data (issue 12: removing
`application_token` from the audit's masked keys passed every test before this one)."""

import pytest

from apps.audit import registry as audit_events
from apps.audit.models import AuditEntry
from apps.audit.services import audit_record

pytestmark = pytest.mark.django_db

# `code` is left out: it names an error code (readable) unless its value looks like a secret,
# which test_a_code_that_looks_like_a_secret_is_masked covers.
SECRET_KEYS = ["webhook_code", "access_token", "refresh_token", "client_secret", "application_token",
               "auth", "token", "password", "secret"]


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_secret_keys_are_masked_at_any_depth(key):
    value = f"canary-{key}-77"
    audit_record(action=audit_events.PLAN_SUBMITTED, data={
        key: value, "nested": {key.upper(): value, "list": [{key: value}]}, "kept": "visible"})
    entry = AuditEntry.objects.latest("created_at")
    assert value not in str(entry.data)
    assert entry.data[key] == "***" and entry.data["nested"][key.upper()] == "***"
    assert entry.data["nested"]["list"] == [{key: "***"}] and entry.data["kept"] == "visible"


def test_a_code_that_looks_like_a_secret_is_masked_and_an_error_code_is_not():
    audit_record(action=audit_events.PLAN_SUBMITTED, data={
        "code": "4f6e1c2a9b7d0e3f4f6e1c2a9b7d0e3f", "nested": {"code": "NO_AUTH_FOUND"}})
    entry = AuditEntry.objects.latest("created_at")
    assert entry.data["code"] == "***"
    assert entry.data["nested"]["code"] == "NO_AUTH_FOUND"
