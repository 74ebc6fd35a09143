"""apps.core.sql: fixed statements that answer what the ORM answers. Rows load into instances
as the ORM builds them (converters applied: encrypted fields decrypt, datetimes are aware), and
inserts store what `save()` would. Also run on PostgreSQL by tests/services/test_hot_lookups_postgres.py."""

import datetime
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.audit.models import AuditEntry
from apps.core import sql
from apps.plans.models import Plan
from apps.portals.models import Credential

pytestmark = pytest.mark.django_db


def test_columns_follow_the_models_order_and_refuse_what_is_not_a_column():
    columns = sql.Columns(Plan, ["status", "id", "agent"])
    assert [f.name for f in columns.fields] == ["id", "agent", "status"]  # as Model.from_db reads them
    assert columns.sql == "id, agent_id, status"
    with pytest.raises(ValueError):
        sql.Columns(Plan, ["approvals"])  # a reverse relation, not a column


def test_a_loaded_row_is_the_instance_the_orm_builds(portal):
    credential = Credential.objects.get(portal=portal)
    columns = sql.Columns(Credential, ["id", "portal", "webhook_code", "created_at"], alias="c")
    row = sql.fetchone(f"SELECT {columns.sql} FROM {Credential._meta.db_table} c WHERE c.id = %s", [credential.pk])
    loaded = columns.load(row)
    assert loaded.webhook_code == credential.webhook_code and loaded.webhook_code  # decrypted by its converter
    assert loaded.created_at == credential.created_at and loaded.created_at.tzinfo is not None
    assert "client_secret" in loaded.get_deferred_fields()
    assert loaded.client_secret == credential.client_secret  # a deferred field still loads when read


def test_an_insert_stores_what_save_would(agent, portal):
    before = timezone.now()
    plan = Plan(agent=agent, portal=portal, status="pending_approval", risk="write",
                steps=[{"name": "call", "method": "crm.lead.add", "params": {"fields": {"TITLE": "ä \u2028"}}}],
                content_hash="h" * 64, packs=["core"], policy_reasons=["why"],
                expires_at=before + datetime.timedelta(hours=1))
    columns = sql.Columns(Plan, [f.name for f in Plan._meta.concrete_fields])
    with CaptureQueriesContext(connection) as captured:
        columns.insert([plan])
    assert len(captured.captured_queries) == 1
    assert before <= plan.created_at <= plan.updated_at  # auto_now_add and auto_now filled, as save() fills them
    assert plan._state.adding is False
    stored = Plan.objects.get(pk=plan.pk)
    for field in Plan._meta.concrete_fields:
        assert getattr(stored, field.attname) == getattr(plan, field.attname), field.name
    assert isinstance(stored.pk, uuid.UUID)


def test_many_rows_in_one_statement_get_their_ids_in_order():
    entries = [AuditEntry(chain="system", seq=1000 + i, created_at=timezone.now(), action="x", actor_type="system",
                          actor="system", portal="", data={"i": i}, prev_hash="p", hash=f"h{i}", key_id="k")
               for i in range(3)]
    sql.Columns(AuditEntry, ["chain", "seq", "created_at", "action", "actor_type", "actor", "portal", "plan_id",
                             "data", "prev_hash", "hash", "key_id"]).insert(entries)
    assert all(entry.pk is not None for entry in entries)
    assert [AuditEntry.objects.get(pk=entry.pk).data for entry in entries] == [{"i": 0}, {"i": 1}, {"i": 2}]
