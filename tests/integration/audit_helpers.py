"""Helpers proving that a service writes its audit entry in the same transaction as its change."""

import contextlib

import pytest

from apps.audit import services as audit_services
from apps.audit.models import AuditEntry


class AfterAudit(Exception):
    """Raised right after an audit entry was written, inside the service's transaction."""


@contextlib.contextmanager
def failing_after_audit(module, *, after: int = 1):
    """Make `module.audit_record` write its entry and then raise, on the `after`-th call: the
    service's change must roll back together with the entry (and every earlier one)."""
    calls = []

    def record_then_fail(**kwargs):
        entry = audit_services.audit_record(**kwargs)
        calls.append(entry)
        if len(calls) == after:
            raise AfterAudit
        return entry

    before = AuditEntry.objects.count()
    original, module.audit_record = module.audit_record, record_then_fail
    try:
        with pytest.raises(AfterAudit):
            yield calls
    finally:
        module.audit_record = original
    assert calls, "the service wrote no audit entry"
    assert AuditEntry.objects.count() == before, "the audit entry outlived the rolled-back change"


def new_entries(since: int):
    """Entries written after `last_seq()` returned `since`, in write order (every chain)."""
    return list(AuditEntry.objects.filter(pk__gt=since).order_by("pk"))


def last_seq() -> int:
    """A mark in the write order of all chains (`seq` counts per chain, so the row id is used)."""
    entry = AuditEntry.objects.order_by("-pk").first()
    return entry.pk if entry else 0
