import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.audit import registry
from apps.audit.models import AuditEntry
from apps.audit.services import audit_record, audit_verify

pytestmark = pytest.mark.django_db


@pytest.fixture
def chain(db):
    for i in range(5):
        audit_record(action=registry.GRANT_CHANGED, data={"i": i, "nested": {"a": [1, 2]}})
    return list(AuditEntry.objects.order_by("seq"))


def test_intact_chain_verifies(chain, capsys):
    assert audit_verify().ok
    call_command("audit_verify")
    assert "5 entries" in capsys.readouterr().out


def test_each_entry_links_to_the_previous(chain):
    assert chain[0].prev_hash == "0" * 64
    for prev, entry in zip(chain, chain[1:], strict=False):
        assert entry.prev_hash == prev.hash


def test_edited_entry_is_named(chain):
    AuditEntry.objects.filter(seq=3).update(data={"i": 99})
    result = audit_verify()
    assert not result.ok and result.bad_seq == 3
    with pytest.raises(CommandError, match="#3"):
        call_command("audit_verify")


def test_deleted_middle_entry_is_named(chain):
    AuditEntry.objects.filter(seq=2).delete()
    result = audit_verify()
    assert not result.ok and result.bad_seq == 2


def test_deleted_last_entry_is_detected(chain):
    AuditEntry.objects.filter(seq=5).delete()
    result = audit_verify()
    assert not result.ok and result.bad_seq == 5


def test_reordered_entries_are_detected(chain):
    a, b = chain[1], chain[2]
    AuditEntry.objects.filter(pk=a.pk).update(seq=1000)
    AuditEntry.objects.filter(pk=b.pk).update(seq=a.seq)
    AuditEntry.objects.filter(pk=a.pk).update(seq=b.seq)
    result = audit_verify()
    assert not result.ok and result.bad_seq == 2


def test_rehashed_edit_still_breaks_the_next_link(chain):
    from apps.audit.services import _hash_of

    entry = AuditEntry.objects.get(seq=3)
    entry.data = {"i": 42}
    entry.hash = _hash_of(entry)
    entry.save()
    result = audit_verify()
    assert not result.ok and result.bad_seq == 4


def test_unregistered_action_is_refused(db):
    with pytest.raises(ValueError):
        audit_record(action="made.up")


def test_duplicate_registration_fails():
    with pytest.raises(ValueError):
        registry.register(registry.PLAN_SUBMITTED, "again")


def test_secrets_are_scrubbed_from_data(db):
    entry = audit_record(action=registry.PORTAL_CHANGED, data={"webhook_code": "s3cret", "auth": {"x": 1}, "ok": 1})
    assert entry.data == {"webhook_code": "***", "auth": "***", "ok": 1}
