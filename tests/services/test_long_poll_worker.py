"""A long poll woken across processes (real PostgreSQL, a real broker, a real Celery worker): an
auto read plan executed by the worker wakes `plan_await_final` in this process through the
configured transport (Redis pub/sub when the broker is Redis, unix datagrams otherwise), with
the fallback re-read set to an hour so nothing else can answer it."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.db import connections

from apps.core import wakeup
from apps.plans import services
from apps.plans.selectors import plan_await_final, plans_for_agent
from tests.services import needs_broker, needs_postgres
from tests.services.test_plan_execution import sandbox_portal, worker_pool  # noqa: F401 - fixtures

pytestmark = [
    pytest.mark.services,
    needs_postgres,
    needs_broker,
    pytest.mark.django_db(transaction=True),
]


def test_the_workers_transition_wakes_a_waiting_request(sandbox_portal, make_agent, worker_pool,  # noqa: F811
                                                        settings, monkeypatch):
    settings.WAKEUP_FALLBACK_SECONDS = 3600
    ends = []
    original = wakeup.Subscription.wait

    async def spy(self, timeout):
        ends.append(await original(self, timeout))
        return ends[-1]

    monkeypatch.setattr(wakeup.Subscription, "wait", spy)
    agent = make_agent("waiter", portal=sandbox_portal)
    plan = services.plan_submit(agent=agent, portal=sandbox_portal,
                                steps=[{"name": "call", "method": "user.current", "params": {}}]).plan
    plan = plans_for_agent(agent).get(pk=plan.pk)
    final = asyncio.run(plan_await_final(agent=agent, plan=plan, seconds=30))
    asyncio.run(sync_to_async(connections.close_all)())  # the reads' thread: let the test database go
    assert final.status == "succeeded"
    assert ends and all(ends)  # it waited, and each wait was ended by the worker's signal
    assert wakeup.transport_name() == ("redis" if settings.CELERY_BROKER_URL.startswith("redis") else "unix")
