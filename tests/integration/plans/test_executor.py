"""The executor's promises, against the sandbox portal over real HTTP with injected faults."""

import datetime
import time

import pytest
from django.utils import timezone

from apps.plans import executor, services
from apps.plans.models import Plan
from apps.policy.models import PackGrant
from apps.portals.services import portal_upsert
from apps.sandbox.selectors import sandbox_method_calls, sandbox_records
from apps.sandbox.services import sandbox_portal_ensure, sandbox_set_faults, sandbox_set_limits, sandbox_webhook_create

pytestmark = pytest.mark.django_db(transaction=True)
ADD = [{"name": "call", "method": "crm.lead.add", "params": {"fields": {"TITLE": "t"}}}]
LIST = [{"name": "call", "method": "crm.lead.list", "params": {}}]


@pytest.fixture
def sandbox(live_server):
    sandbox = sandbox_portal_ensure(slug="ex", rate=100, burst=1000)
    user_id, code = sandbox_webhook_create(portal=sandbox)
    portal, _ = portal_upsert(slug="ex", base_url=f"{live_server.url}/sandbox/ex", auth_mode="webhook",
                              secrets={"webhook_code": code}, fields={"webhook_user_id": str(user_id)},
                              rate_per_second=100, burst=1000)
    return portal, sandbox


@pytest.fixture
def auto_agent(make_agent, sandbox):
    return make_agent("exec-agent", portal=sandbox[0], write="auto", destructive="auto")


def submit(agent, portal, steps):
    plan = services.plan_submit(agent=agent, portal=portal, steps=steps).plan
    assert plan.status == "approved"
    return plan


def test_write_whose_answer_was_lost_needs_reconciliation_and_is_not_resent(sandbox, auto_agent):
    portal, sb = sandbox
    sandbox_set_faults(portal=sb, fail_5xx=1, when="after")
    plan = submit(auto_agent, portal, ADD)
    outcome = executor.execute(plan_id=plan.pk)
    assert outcome.status == "needs_reconciliation" and outcome.retry_in is None
    plan.refresh_from_db()
    assert plan.status == "needs_reconciliation" and plan.error["code"] == "outcome_unknown"
    assert len(sandbox_records(portal=sb, entity="lead")) == 1  # the write did happen on the portal
    # a redelivered task does nothing
    assert executor.execute(plan_id=plan.pk).status == "skipped"
    assert executor.execute(plan_id=plan.pk, attempt=1).status == "skipped"
    assert sandbox_method_calls(portal=sb, method="crm.lead.add") == 1


def test_write_read_timeout_needs_reconciliation(sandbox, auto_agent, settings):
    portal, sb = sandbox
    settings.BITRIX_READ_TIMEOUT = 0.5
    sandbox_set_faults(portal=sb, timeout_seconds=1.5, when="after")
    plan = submit(auto_agent, portal, ADD)
    assert executor.execute(plan_id=plan.pk).status == "needs_reconciliation"
    time.sleep(1.2)  # the server thread is still sleeping in the fault; let it answer before teardown


def test_read_is_retried_on_5xx_then_succeeds(sandbox, auto_agent):
    portal, sb = sandbox
    sandbox_set_faults(portal=sb, fail_5xx=1, when="before")
    plan = submit(auto_agent, portal, LIST)
    first = executor.execute(plan_id=plan.pk)
    assert first.status == "executing" and first.retry_in > 0 and first.attempt == 1
    second = executor.execute(plan_id=plan.pk, attempt=first.attempt)
    assert second.status == "succeeded"
    assert Plan.objects.get(pk=plan.pk).attempts.count() == 2


def fill_portal_bucket(portal, sb):
    """Make the portal's own bucket full (burst 1, almost no drain): its next answer is 503."""
    from apps.bitrix.client import BitrixClient

    sandbox_set_limits(portal=sb, rate=0.001, burst=1)
    BitrixClient(portal).call("server.time", {})


def test_write_refused_by_the_rate_limit_is_retried(sandbox, auto_agent):
    portal, sb = sandbox
    fill_portal_bucket(portal, sb)  # the portal now refuses: 503 QUERY_LIMIT_EXCEEDED
    plan = submit(auto_agent, portal, ADD)
    first = executor.execute(plan_id=plan.pk)
    assert first.status == "executing" and first.retry_in is not None
    attempt = Plan.objects.get(pk=plan.pk).attempts.get()
    assert attempt.outcome == "not_sent" and attempt.detail["code"] == "QUERY_LIMIT_EXCEEDED"
    sandbox_set_limits(portal=sb, rate=100, burst=1000)
    assert executor.execute(plan_id=plan.pk, attempt=first.attempt).status == "succeeded"
    assert len(sandbox_records(portal=sb, entity="lead")) == 1


def test_retries_give_up_after_the_last_attempt(sandbox, auto_agent, monkeypatch):
    portal, sb = sandbox
    monkeypatch.setattr(executor, "MAX_ATTEMPTS", 2)
    fill_portal_bucket(portal, sb)
    plan = submit(auto_agent, portal, LIST)
    first = executor.execute(plan_id=plan.pk)
    final = executor.execute(plan_id=plan.pk, attempt=first.attempt)
    assert final.status == "failed"
    assert Plan.objects.get(pk=plan.pk).error["code"] == "retries_exhausted"


def test_portal_error_fails_the_plan_with_each_steps_error(sandbox, auto_agent):
    portal, sb = sandbox
    plan = submit(auto_agent, portal, [{"name": "call", "method": "crm.lead.get", "params": {"id": 999}}])
    assert executor.execute(plan_id=plan.pk).status == "failed"
    plan.refresh_from_db()
    assert plan.error["code"] in ("portal_error", "step_failed")


def test_grant_revoked_after_approval_stops_the_plan(sandbox, make_agent, make_approver):
    portal, sb = sandbox
    agent = make_agent("revoked", portal=portal)
    approver = make_approver("ann", portals=[portal])
    plan = services.plan_submit(agent=agent, portal=portal, steps=ADD).plan
    services.plan_decide(plan_id=plan.pk, user=approver, decision="approve")
    PackGrant.objects.filter(agent=agent).delete()
    assert executor.execute(plan_id=plan.pk).status == "failed"
    plan.refresh_from_db()
    assert plan.error["code"] == "policy_refused" and plan.attempts.count() == 0
    assert sandbox_method_calls(portal=sb, method="crm.lead.add") == 0


def test_grant_expired_after_approval_stops_the_plan(sandbox, make_agent):
    portal, sb = sandbox
    agent = make_agent("expiring", portal=portal, write="auto")
    plan = submit(agent, portal, ADD)
    PackGrant.objects.filter(agent=agent).update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    assert executor.execute(plan_id=plan.pk).status == "failed"
    assert Plan.objects.get(pk=plan.pk).error["code"] == "policy_refused"


def test_policy_tightened_after_approval_stops_the_plan(sandbox, make_agent, make_approver):
    portal, sb = sandbox
    agent = make_agent("tightened", portal=portal)
    approver = make_approver("ann", portals=[portal])
    plan = services.plan_submit(agent=agent, portal=portal, steps=ADD).plan
    services.plan_decide(plan_id=plan.pk, user=approver, decision="approve")
    PackGrant.objects.filter(agent=agent).update(write_policy="approve2")
    assert executor.execute(plan_id=plan.pk).status == "failed"
    assert Plan.objects.get(pk=plan.pk).error["approvals_required"] == 2


def test_worker_lost_mid_write_is_recovered_as_needs_reconciliation(sandbox, auto_agent):
    from apps.plans.models import ExecutionAttempt
    from apps.plans.states import transition

    portal, sb = sandbox
    plan = submit(auto_agent, portal, ADD)
    transition(plan=plan, source="approved", target="executing")
    Plan.objects.filter(pk=plan.pk).update(attempt_count=1)
    ExecutionAttempt.objects.create(plan=plan, number=1)  # sent, then the worker died
    later = timezone.now() + services.stale_after() + datetime.timedelta(seconds=1)
    assert services.plans_recover_stale(now=later) == 1
    assert Plan.objects.get(pk=plan.pk).status == "needs_reconciliation"


def test_reconciliation_in_the_admin(sandbox, auto_agent, make_approver, client):
    portal, sb = sandbox
    sandbox_set_faults(portal=sb, fail_5xx=1, when="after")
    plan = submit(auto_agent, portal, ADD)
    executor.execute(plan_id=plan.pk)
    approver = make_approver("ann", portals=[portal])
    client.force_login(approver)
    page = client.get(f"/admin/plans/plan/{plan.pk}/change/")
    assert f"{plan.pk}/decide/settle_succeeded/" in page.content.decode()
    client.post(f"/admin/plans/plan/{plan.pk}/decide/settle_succeeded/", {"post": "yes", "comment": "lead is there"})
    assert Plan.objects.get(pk=plan.pk).status == "succeeded"


def test_approved_plan_not_executed_within_ttl_expires(sandbox, make_agent, make_approver, settings):
    portal, sb = sandbox
    agent = make_agent("slow", portal=portal)
    approver = make_approver("ann", portals=[portal])
    plan = services.plan_submit(agent=agent, portal=portal, steps=ADD).plan
    services.plan_decide(plan_id=plan.pk, user=approver, decision="approve")
    later = timezone.now() + datetime.timedelta(seconds=settings.PLAN_TTL + 1)
    assert services.plans_expire_due(now=later) == 1
    assert Plan.objects.get(pk=plan.pk).status == "expired"
    assert executor.execute(plan_id=plan.pk).status == "skipped"


def test_deferrals_by_our_own_limiter_are_not_tries(sandbox, auto_agent, monkeypatch):
    from apps.bitrix.models import PortalLimiter

    portal, sb = sandbox
    monkeypatch.setattr(executor, "MAX_ATTEMPTS", 2)
    plan = submit(auto_agent, portal, LIST)
    # our shared bucket is far ahead (other plans reserved it): the limiter defers, nothing is sent
    PortalLimiter.objects.update_or_create(portal=portal, defaults={"level": portal.burst + 500,
                                                                    "updated_at": time.time() + 60})
    outcomes = [executor.execute(plan_id=plan.pk)]
    for _ in range(3):
        outcomes.append(executor.execute(plan_id=plan.pk, attempt=outcomes[-1].attempt))
    assert all(o.status == "executing" and o.retry_in >= 5 for o in outcomes)  # waits as long as the bucket says
    assert sandbox_method_calls(portal=sb, method="crm.lead.list") == 0
    PortalLimiter.objects.filter(pk=portal.pk).update(level=0, updated_at=time.time())
    assert executor.execute(plan_id=plan.pk, attempt=outcomes[-1].attempt).status == "succeeded"


def test_the_task_queues_its_retry_through_the_one_enqueue(sandbox, auto_agent, queued_executions):
    from apps.plans.tasks import execute_plan

    portal, sb = sandbox
    sandbox_set_faults(portal=sb, fail_5xx=1, when="before")
    plan = submit(auto_agent, portal, LIST)  # autocommit: its enqueue is published at once
    assert execute_plan(str(plan.pk)) == "executing"
    (first, retry) = queued_executions
    assert first == ((str(plan.pk),), {}, None)
    assert retry[:2] == ((str(plan.pk),), {"attempt": 1}) and retry[2] > 0
    assert execute_plan(*retry[0], **retry[1]) == "succeeded"


def test_a_read_whose_worker_died_is_queued_again_by_the_recovery_task(sandbox, auto_agent, queued_executions,
                                                                        monkeypatch):
    from apps.plans import tasks
    from apps.plans.states import transition

    portal, sb = sandbox
    plan = submit(auto_agent, portal, LIST)
    transition(plan=plan, source="approved", target="executing")  # then the worker died, nothing sent
    assert tasks.recover_stale_plans() == 0  # not stale yet
    monkeypatch.setattr(tasks.execute_plan, "time_limit", -120)  # every executing plan is now stale
    assert tasks.recover_stale_plans() == 1
    attempt = Plan.objects.get(pk=plan.pk).attempts.get()
    assert attempt.number == 1 and attempt.detail == {"code": "worker_lost"}
    assert queued_executions[-1] == ((str(plan.pk),), {"attempt": 1}, None)
    assert tasks.execute_plan(str(plan.pk), attempt=1) == "succeeded"
