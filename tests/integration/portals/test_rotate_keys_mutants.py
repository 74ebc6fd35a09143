"""Key rotation at its edges: an empty secret does not stop the rest of its row, every value no
key opens is named (by place, never by content), and the audit entry counts what was current.
Written against the survivors of `make mutate MUTATE_ONLY=crypto` (bench/README.md, "Mutation
testing"); the tests call `crypto.secrets_rotate`."""

import pytest
from cryptography.fernet import Fernet
from django.db import models

from apps.audit import registry as audit_events
from apps.audit.models import AuditEntry
from apps.portals import crypto
from apps.portals.models import Credential
from apps.portals.services import portal_upsert

pytestmark = pytest.mark.django_db

NEW, OLD, LOST = (Fernet.generate_key().decode() for _ in range(3))
SECRETS = {"webhook_code": "canary-webhook-code-1", "access_token": "canary-access-token-2",
           "refresh_token": "canary-refresh-token-3"}


@pytest.fixture
def credential(settings):
    """A portal's secrets written under OLD; then NEW is put first."""
    settings.FIELD_ENCRYPTION_KEYS = [OLD]
    portal, _ = portal_upsert(slug="rot", base_url="https://rot.bitrix24.com", auth_mode="webhook",
                              secrets=SECRETS, fields={"webhook_user_id": "1"})
    settings.FIELD_ENCRYPTION_KEYS = [NEW, OLD]
    return Credential.objects.get(portal=portal)


def store_raw(credential, **tokens):
    Credential.objects.filter(pk=credential.pk).update(
        **{name: models.Value(token, output_field=models.TextField()) for name, token in tokens.items()})


def counts(report):
    return {(f.model, f.field): (f.rotated, f.current) for f in report.fields if f.model == "portals.Credential"}


def test_an_empty_secret_does_not_stop_the_rest_of_its_row(credential):
    store_raw(credential, webhook_code="")
    report = crypto.secrets_rotate()
    assert counts(report)[("portals.Credential", "access_token")] == (1, 0)
    assert counts(report)[("portals.Credential", "refresh_token")] == (1, 0)
    fresh = Credential.objects.get(pk=credential.pk)
    assert (fresh.access_token, fresh.refresh_token, fresh.webhook_code) == (
        "canary-access-token-2", "canary-refresh-token-3", "")


def test_every_value_no_key_opens_is_named_by_its_place_and_nothing_changes(credential):
    lost = Fernet(LOST.encode())
    store_raw(credential, webhook_code=lost.encrypt(b"x").decode(), access_token=lost.encrypt(b"y").decode())
    before = Credential.objects.filter(pk=credential.pk).annotate(
        raw=models.ExpressionWrapper(models.F("refresh_token"), output_field=models.TextField())).values_list(
        "raw", flat=True).get()
    with pytest.raises(crypto.UndecryptableSecrets) as refused:
        crypto.secrets_rotate()
    assert refused.value.where == [f"portals.Credential.webhook_code pk={credential.pk}",
                                   f"portals.Credential.access_token pk={credential.pk}"]
    after = Credential.objects.filter(pk=credential.pk).annotate(
        raw=models.ExpressionWrapper(models.F("refresh_token"), output_field=models.TextField())).values_list(
        "raw", flat=True).get()
    assert after == before and not crypto.is_current(after)  # the readable one was not rotated either


def test_the_audit_entry_counts_rotated_and_current_values_per_field(credential):
    store_raw(credential, refresh_token=Fernet(NEW.encode()).encrypt(b"already-new").decode())
    report = crypto.secrets_rotate()
    entry = AuditEntry.objects.filter(action=audit_events.SECRETS_ROTATED).get()
    fields = {(f["model"], f["field"]): f for f in entry.data["fields"]}
    assert fields[("portals.Credential", "refresh_token")] == {
        "model": "portals.Credential", "field": "refresh_token", "rotated": 0, "current": 1}
    assert fields[("portals.Credential", "webhook_code")]["rotated"] == 1
    assert (entry.data["rotated"], entry.data["current"]) == (report.rotated, report.current)
