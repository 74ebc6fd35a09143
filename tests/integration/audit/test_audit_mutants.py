"""Tests written against the mutants of apps/audit/services.py that the audit test set let
survive (mutmut 2.5.1, `make mutate MUTATE_ONLY=audit`; bench/README.md lists them): who an entry
names as its actor, what it stores, what one write costs, the collected writes, the checkpoint
sinks' failures and the sink error's place in the error catalogue."""

import json

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from apps.audit import registry
from apps.audit.models import AuditEntry, AuditHead
from apps.audit.services import (
    CheckpointSinkError,
    actor_of,
    audit_collected,
    audit_record,
    audit_verify,
)
from apps.core.api import error_response
from apps.core.exceptions import error_codes

pytestmark = pytest.mark.django_db


# --- the sink error in the error catalogue -----------------------------------------------------


def test_a_sink_outage_is_a_503_with_its_own_code():
    assert error_codes()["checkpoint_sink_failed"] == (503,)
    response = error_response(CheckpointSinkError("The checkpoint URL answered HTTP 500."))
    assert response.status_code == 503
    assert json.loads(response.content) == {
        "error": {"code": "checkpoint_sink_failed", "message": "The checkpoint URL answered HTTP 500."}}


# --- the actor an entry names ------------------------------------------------------------------


def test_an_entry_without_actor_names_the_system():
    entry = audit_record(action=registry.GRANT_CHANGED, data={})
    stored = AuditEntry.objects.get(pk=entry.pk)
    assert (stored.actor_type, stored.actor) == ("system", "system")
    assert actor_of(None) == ("system", "system")


def test_an_entry_by_an_agent_names_the_agent_by_its_slug(make_agent):
    agent = make_agent("agent-x")
    entry = audit_record(action=registry.GRANT_CHANGED, actor=agent, data={})
    stored = AuditEntry.objects.get(pk=entry.pk)
    assert (stored.actor_type, stored.actor) == ("agent", "agent-x")


def test_an_entry_by_a_user_names_the_user_by_username(django_user_model):
    user = django_user_model.objects.create_user(username="carol", password="pw-carol")
    entry = audit_record(action=registry.GRANT_CHANGED, actor=user, data={})
    stored = AuditEntry.objects.get(pk=entry.pk)
    assert (stored.actor_type, stored.actor) == ("user", "carol")


# --- what an entry stores, and what one write costs --------------------------------------------


def test_the_entry_stores_the_data_it_was_given():
    data = {"grant": "acme/core", "limits": {"per_day": 5}, "names": ["a", "b"]}
    entry = audit_record(action=registry.GRANT_CHANGED, portal="acme", data=data)
    assert entry.data == data
    assert AuditEntry.objects.get(pk=entry.pk).data == data
    assert audit_verify().ok


def test_writing_on_an_existing_chain_takes_three_statements():
    """Lock the head, insert the entry, move the head: the chain's head row is read once (the
    `get_or_create` path is for a chain's first entry only)."""
    audit_record(action=registry.GRANT_CHANGED, portal="acme", data={"i": 0})
    with CaptureQueriesContext(connection) as queries:
        audit_record(action=registry.GRANT_CHANGED, portal="acme", data={"i": 1})
    statements = [q["sql"].split()[0].upper() for q in queries.captured_queries]
    assert statements == ["SELECT", "INSERT", "UPDATE"], queries.captured_queries
    assert AuditHead.objects.get(chain="portal:acme").seq == 2


def test_a_chains_first_entry_creates_its_head():
    audit_record(action=registry.GRANT_CHANGED, portal="newco", data={})
    head = AuditHead.objects.get(chain="portal:newco")
    assert head.seq == 1 and head.hash == AuditEntry.objects.get(chain="portal:newco", seq=1).hash


# --- collected writes --------------------------------------------------------------------------


def test_collected_entries_are_written_when_the_block_ends():
    with transaction.atomic():
        with audit_collected():
            audit_record(action=registry.GRANT_CHANGED, portal="acme", data={"i": 1})
            with audit_collected():  # nested: shares the outer queue
                audit_record(action=registry.GRANT_CHANGED, portal="beta", data={"i": 2})
            audit_record(action=registry.GRANT_CHANGED, portal="acme", data={"i": 3})
            assert AuditEntry.objects.count() == 0  # queued, not yet written
        assert [(e.chain, e.seq, e.data["i"]) for e in AuditEntry.objects.order_by("pk")] == [
            ("portal:acme", 1, 1), ("portal:acme", 2, 3), ("portal:beta", 1, 2)]
    # a later direct write continues the chain the collected block left
    audit_record(action=registry.GRANT_CHANGED, portal="acme", data={"i": 4})
    assert AuditHead.objects.get(chain="portal:acme").seq == 3
    assert audit_verify().ok


def test_after_a_collected_block_writes_go_straight_to_the_chain_again():
    with transaction.atomic(), audit_collected():
        audit_record(action=registry.GRANT_CHANGED, portal="acme", data={"i": 1})
    entry = audit_record(action=registry.GRANT_CHANGED, portal="acme", data={"i": 2})
    assert AuditEntry.objects.filter(pk=entry.pk, seq=2).exists()


def test_an_exception_leaving_the_block_drops_the_queue():
    with pytest.raises(ZeroDivisionError), transaction.atomic(), audit_collected():
        audit_record(action=registry.GRANT_CHANGED, portal="acme", data={})
        1 / 0  # noqa: B018
    assert AuditEntry.objects.count() == 0
    entry = audit_record(action=registry.GRANT_CHANGED, portal="acme", data={})
    assert AuditEntry.objects.filter(pk=entry.pk, seq=1).exists()


@pytest.mark.django_db(transaction=True)
def test_collecting_outside_a_transaction_is_refused():
    with pytest.raises(RuntimeError, match="must run inside the transaction"), audit_collected():
        pass
    assert AuditEntry.objects.count() == 0
