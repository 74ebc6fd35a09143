"""Concurrent approve and reject on PostgreSQL end in exactly one state (row lock + conditional update)."""

import threading

import pytest
from django.db import connections

from apps.core.exceptions import ApplicationError
from apps.plans import services
from apps.plans.models import Approval, Plan
from tests.services import needs_postgres

pytestmark = [
    pytest.mark.services,
    needs_postgres,
    pytest.mark.django_db(transaction=True),
]


@pytest.mark.parametrize("round_", range(5))
def test_approve_and_reject_race(agent, portal, make_approver, round_):
    deciders = [make_approver(f"a{round_}{i}", portals=[portal]) for i in range(6)]
    plan = services.plan_submit(agent=agent, portal=portal, steps=[
        {"name": "call", "method": "crm.lead.add", "params": {"fields": {"TITLE": "race"}}}]).plan
    barrier = threading.Barrier(len(deciders))
    outcomes = []

    def decide(user, decision):
        try:
            barrier.wait()
            services.plan_decide(plan_id=plan.pk, user=user, decision=decision)
            outcomes.append(("ok", decision))
        except ApplicationError as exc:
            outcomes.append(("refused", exc.code))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=decide, args=(u, "approve" if i % 2 else "reject"))
               for i, u in enumerate(deciders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    final = Plan.objects.get(pk=plan.pk)
    winners = [o for o in outcomes if o[0] == "ok"]
    assert len(outcomes) == len(deciders)
    assert len(winners) == 1, outcomes  # one decision ends a single-approval plan; the rest see it moved on
    assert final.status == {"approve": "approved", "reject": "rejected"}[winners[0][1]]
    assert Approval.objects.filter(plan=plan).count() == 1
