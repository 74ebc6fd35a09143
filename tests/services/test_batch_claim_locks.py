"""The batch claim's row locks on PostgreSQL (SQLite, the integration suite's database, ignores
`select_for_update`): two leaders claiming companions on one portal at the same time do not wait
for each other's rows (`skip_locked=True`), and a claim locks only the plans it read, not their
agents joined in by `select_related` (`of=("self",)`). Written against the executor's mutants
`skip_locked=False` and `of=("XXselfXX",)` (bench/README.md, mutmut on branch mutate5)."""

import threading

import pytest
from django.db import OperationalError, connections, transaction

from apps.agents.models import Agent
from apps.plans import executor, services
from apps.plans.models import Plan
from tests.services import needs_postgres

pytestmark = [
    pytest.mark.services,
    needs_postgres,
    pytest.mark.django_db(transaction=True),
]


def test_two_leaders_claim_disjoint_companions_without_waiting_for_each_other(make_agent, portal, monkeypatch):
    agent = make_agent("claimer", portal=portal, read="auto")
    leader_a, leader_b, *plans = (services.plan_submit(agent=agent, portal=portal, steps=[
        {"name": "read", "method": "crm.lead.get", "params": {"id": i}}]).plan for i in range(10))
    assert {p.status for p in (leader_a, leader_b, *plans)} == {"approved"}
    for leader in (leader_a, leader_b):
        assert executor._enter(leader) is not None  # executing: neither can be the other's companion
    newest_first = [p.pk for p in reversed(plans)]

    # Leader A stops inside its claim's transaction, at its first preflight: the four newest plans
    # (twice its room of two) are locked by then.
    a_holds, a_may_go = threading.Event(), threading.Event()
    check = executor._check

    def pausing_check(plan, grants=None):
        if threading.current_thread().name == "leader-a" and not a_holds.is_set():
            a_holds.set()
            a_may_go.wait(60)
        return check(plan, grants)

    monkeypatch.setattr(executor, "_check", pausing_check)
    claimed, errors = {}, []

    def claim(name, leader):
        try:
            claimed[name] = [p.pk for p, _attempt in executor._claim_companions(leader, room=2, held=set())]
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread below
            errors.append((name, repr(exc)))
        finally:
            a_holds.set()  # a failed claim must not leave the test waiting
            connections.close_all()

    thread_a = threading.Thread(target=claim, args=("a", leader_a), name="leader-a")
    thread_b = threading.Thread(target=claim, args=("b", leader_b), name="leader-b")
    thread_a.start()
    try:
        assert a_holds.wait(30)
        assert errors == []
        # What A holds: its plan rows, not the agent row its query joined.
        with transaction.atomic():
            assert Agent.objects.select_for_update(nowait=True).get(pk=agent.pk).pk == agent.pk
        with pytest.raises(OperationalError, match="could not obtain lock"), transaction.atomic():
            list(Plan.objects.select_for_update(nowait=True).filter(pk=newest_first[0]))
        # B claims while A still holds its rows: it passes over them and takes the next two.
        thread_b.start()
        thread_b.join(20)
        assert not thread_b.is_alive(), "leader B waited for the rows leader A holds"
        assert errors == []
        assert claimed == {"b": newest_first[4:6]}
    finally:
        a_may_go.set()
        thread_a.join(30)
        if thread_b.ident is not None:  # started
            thread_b.join(30)
    assert errors == []
    assert claimed == {"a": newest_first[:2], "b": newest_first[4:6]}
    statuses = dict(Plan.objects.filter(pk__in=newest_first).values_list("pk", "status"))
    assert [statuses[pk] for pk in newest_first] == ["executing"] * 2 + ["approved"] * 2 + ["executing"] * 2 + [
        "approved"] * 2
