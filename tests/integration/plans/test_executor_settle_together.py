"""A single plan's answered attempt and its final state are one commit: a worker that dies (or a
database that fails) between them leaves the attempt open, which stale recovery turns into
needs_reconciliation for a write, never an answered attempt on an `executing` plan that recovery
would skip for ever."""

import datetime
import json

import pytest
from django.db import OperationalError
from django.utils import timezone

from apps.plans import executor, services
from apps.plans.choices import AttemptOutcome
from apps.plans.models import Plan

pytestmark = pytest.mark.django_db(transaction=True)


class FakeResponse:
    status_code = 200
    content = json.dumps({"result": 7}).encode()


@pytest.fixture
def approved_write(make_agent, portal, monkeypatch):
    monkeypatch.setattr("apps.bitrix.client.http_send", lambda *args, **kwargs: FakeResponse())
    agent = make_agent("settler", portal=portal, write="auto")
    return services.plan_submit(agent=agent, portal=portal, steps=[
        {"name": "call", "method": "crm.lead.add", "params": {"fields": {"TITLE": "x"}}}]).plan


def test_a_failed_settle_leaves_the_attempt_open_and_recovery_reconciles(approved_write, monkeypatch):
    def broken_settle(plan, answer):
        raise OperationalError("the database went away")

    monkeypatch.setattr(executor, "_settle", broken_settle)
    with pytest.raises(OperationalError):
        executor.execute(plan_id=approved_write.pk)
    plan = Plan.objects.get(pk=approved_write.pk)
    assert plan.status == "executing"
    assert [a.outcome for a in plan.attempts.all()] == [AttemptOutcome.OPEN]  # the close rolled back with it

    recovered = services.plans_recover_stale(now=timezone.now() + services.stale_after() + datetime.timedelta(1))
    plan.refresh_from_db()
    assert recovered == 1 and plan.status == "needs_reconciliation"


def test_a_settled_plan_has_its_attempt_answered(approved_write):
    executor.execute(plan_id=approved_write.pk)
    plan = Plan.objects.get(pk=approved_write.pk)
    assert plan.status == "succeeded"
    assert [a.outcome for a in plan.attempts.all()] == [AttemptOutcome.ANSWERED]
