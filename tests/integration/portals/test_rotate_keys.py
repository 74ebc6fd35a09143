"""`manage.py rotate_keys`: every stored secret ends up under the first key, values unchanged."""

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import models

from apps.audit import registry as audit_events
from apps.audit.models import AuditEntry
from apps.portals import crypto
from apps.portals.models import Credential, OAuthApp, Portal
from apps.portals.services import portal_upsert

pytestmark = pytest.mark.django_db

NEW, OLD = Fernet.generate_key().decode(), Fernet.generate_key().decode()
SECRETS = {
    "webhook_code": "canary-webhook-code-1",
    "access_token": "canary-access-token-2",
    "refresh_token": "canary-refresh-token-3",
    "client_secret": "canary-client-secret-4",
    "application_token": "canary-app-token-5",
}
APP_SECRET = "canary-app-client-secret-6"


def raw_values() -> dict[tuple[str, str, int], str]:
    """Every non-empty ciphertext as stored, keyed by (model, field, pk)."""
    out = {}
    for model, names in crypto.encrypted_fields():
        # Read the column as plain text: the field itself would decrypt it.
        raw = {f"r_{n}": models.ExpressionWrapper(models.F(n), output_field=models.TextField()) for n in names}
        for row in model._base_manager.annotate(**raw).values("pk", *raw):
            for name in names:
                if row[f"r_{name}"]:
                    out[(model._meta.label, name, row["pk"])] = row[f"r_{name}"]
    return out


@pytest.fixture
def stored(settings):
    """Secrets written while OLD was the only key; then NEW is put first."""
    settings.FIELD_ENCRYPTION_KEYS = [OLD]
    portal, _ = portal_upsert(slug="rot", base_url="https://rot.bitrix24.com", auth_mode="webhook",
                              secrets=SECRETS, fields={"webhook_user_id": "1"})
    portal_upsert(slug="rot-empty", base_url="https://rot2.bitrix24.com", auth_mode="webhook",
                  secrets={"webhook_code": "canary-other-7"}, fields={"webhook_user_id": "2"})
    app = OAuthApp.objects.create(name="app", client_id="local.rot.1", client_secret=APP_SECRET)
    settings.FIELD_ENCRYPTION_KEYS = [NEW, OLD]
    return portal, app


def rotate() -> str:
    out = StringIO()
    call_command("rotate_keys", stdout=out)
    return out.getvalue()


def test_every_encrypted_field_is_covered():
    found = {(model._meta.label, name) for model, names in crypto.encrypted_fields() for name in names}
    assert found == {
        ("portals.Credential", name) for name in Credential.SECRET_FIELDS
    } | {("portals.OAuthApp", "client_secret"), ("agents.Agent", "callback_secret"),
                                                           ("events.EventSubscription", "secret")}


def test_rotation_moves_every_secret_to_the_first_key(stored, settings):
    portal, app = stored
    before = raw_values()
    assert len(before) == 7
    # Before: readable through the second key, not with the first alone.
    assert Credential.objects.get(portal=portal).webhook_code == SECRETS["webhook_code"]
    assert not any(crypto.is_current(token) for token in before.values())

    output = rotate()

    assert "7 secret(s)" in output
    assert "portals.Credential.webhook_code: 2 re-encrypted, 0 already current" in output
    for value in [*SECRETS.values(), APP_SECRET, "canary-other-7", *before.values()]:
        assert value not in output
    after = raw_values()
    assert after.keys() == before.keys()
    settings.FIELD_ENCRYPTION_KEYS = [NEW]  # the old key is gone
    for token in after.values():
        crypto.decrypt(token)
    credential = Credential.objects.get(portal=portal)
    assert {name: getattr(credential, name) for name in SECRETS} == SECRETS
    assert OAuthApp.objects.get(pk=app.pk).client_secret == APP_SECRET
    assert Credential.objects.get(portal__slug="rot-empty").webhook_code == "canary-other-7"
    assert Credential.objects.get(portal__slug="rot-empty").access_token == ""  # empty stays empty


def test_rotation_is_audited_once_with_counts_and_no_secret(stored):
    rotate()
    (entry,) = AuditEntry.objects.filter(action=audit_events.SECRETS_ROTATED)
    assert entry.data["rotated"] == 7 and entry.data["current"] == 0
    by_field = {(f["model"], f["field"]): f["rotated"] for f in entry.data["fields"]}
    assert by_field[("portals.Credential", "webhook_code")] == 2
    assert by_field[("portals.OAuthApp", "client_secret")] == 1
    text = str(entry.data)
    assert not any(value in text for value in [*SECRETS.values(), APP_SECRET])


def test_second_run_changes_nothing(stored):
    rotate()
    first = raw_values()
    output = rotate()
    assert "Nothing to do: all 7 stored secret(s) are under the first key." in output
    assert raw_values() == first
    assert AuditEntry.objects.filter(action=audit_events.SECRETS_ROTATED).count() == 1


def test_a_value_no_key_opens_stops_everything(stored, settings):
    portal, app = stored
    foreign = Fernet(Fernet.generate_key()).encrypt(b"lost").decode()
    Credential.objects.filter(portal=portal).update(
        application_token=models.Value(foreign, output_field=models.TextField())
    )
    before = raw_values()
    with pytest.raises(CommandError) as info:
        rotate()
    pk = Credential.objects.filter(portal=portal).values_list("pk", flat=True).get()
    assert f"portals.Credential.application_token pk={pk}" in str(info.value)
    assert "Nothing was changed" in str(info.value) and foreign not in str(info.value)
    assert raw_values() == before  # the OAuthApp rotated first was rolled back too
    assert not AuditEntry.objects.filter(action=audit_events.SECRETS_ROTATED).exists()


def test_a_portal_added_after_rotation_needs_no_old_key(stored, settings):
    rotate()
    settings.FIELD_ENCRYPTION_KEYS = [NEW]
    portal_upsert(slug="later", base_url="https://later.bitrix24.com", auth_mode="webhook",
                  secrets={"webhook_code": "later-code"}, fields={"webhook_user_id": "3"})
    assert Portal.objects.get(slug="later").credential.webhook_code == "later-code"
