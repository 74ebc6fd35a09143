"""A notice run's row locks on PostgreSQL (SQLite, the integration suite's database, ignores
`select_for_update`): a run passes over a waiting plan another transaction holds (a second run
beside it, a decision being made) instead of waiting for it, and the plan is announced by the
next run. Before, two runs of one portal took turns on every plan, and at 100 waiting plans a
second both worker processes sat in them, in front of the executions (bench/README.md)."""

import threading

import pytest
from django.db import connections

from apps.approvals import notify
from apps.approvals.models import Notice
from apps.plans.models import Plan
from apps.plans.services import plan_submit
from tests.services import held, needs_postgres

pytestmark = [
    pytest.mark.services,
    needs_postgres,
    pytest.mark.django_db(transaction=True),
]

UPDATE = [{"name": "call", "method": "crm.lead.update", "params": {"id": 42, "fields": {"TITLE": "paid"}}}]


def test_a_run_passes_over_a_plan_another_transaction_holds(agent, portal, make_approver, monkeypatch):
    from apps.approvals import tasks

    monkeypatch.setattr(tasks.flush_email, "delay", lambda *a: None)
    monkeypatch.setattr(tasks.notify_portal_pending, "apply_async", lambda *a, **kw: None)
    monkeypatch.setattr(tasks.read_preimages, "delay", lambda *a: None)
    alice = make_approver("alice", portals=[portal])
    alice.email = "alice@example.com"
    alice.save()
    held_plan, *others = (plan_submit(agent=agent, portal=portal, steps=UPDATE).plan for _ in range(3))
    result = {}
    with held(Plan.objects.filter(pk=held_plan.pk)):  # a second run, or a decision, holding it
        runner = threading.Thread(target=lambda: result.update(
            told=notify.notify_waiting(portal_id=portal.pk)) or connections.close_all())
        runner.start()
        runner.join(20)
        assert not runner.is_alive(), "the run waited for the plan another transaction holds"
        assert result == {"told": 2}
    told = dict(Plan.objects.values_list("pk", "approvers_told_at"))
    assert told[held_plan.pk] is None and all(told[p.pk] is not None for p in others)
    assert notify.notify_waiting(portal_id=portal.pk) == 1  # the next run announces it
    assert Notice.objects.filter(plan=held_plan, user=alice, kind="pending").count() == 1
