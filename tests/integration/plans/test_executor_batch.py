"""Auto-batching: ready single-call plans of one portal go as one `batch` (halt=0), each plan
keeping its own result, error, attempt and audit entries. Against the sandbox over real HTTP."""

import time

import pytest

from apps.approvals.models import PlanPreview
from apps.audit.models import AuditEntry
from apps.bitrix import limiter
from apps.bitrix.client import BitrixClient
from apps.bitrix.models import PortalLimiter
from apps.plans import executor, services
from apps.plans.models import ExecutionAttempt, Plan
from apps.policy.models import PackGrant
from apps.portals.services import portal_upsert
from apps.sandbox.selectors import sandbox_counters, sandbox_method_calls, sandbox_records
from apps.sandbox.services import sandbox_portal_ensure, sandbox_set_faults, sandbox_set_limits, sandbox_webhook_create

pytestmark = pytest.mark.django_db(transaction=True)


def add(title):
    return [{"name": "create", "method": "crm.lead.add", "params": {"fields": {"TITLE": title}}}]


def get(lead_id):
    return [{"name": "read", "method": "crm.lead.get", "params": {"id": lead_id}}]


@pytest.fixture
def sandbox(live_server):
    sandbox = sandbox_portal_ensure(slug="bt", rate=100, burst=1000)
    user_id, code = sandbox_webhook_create(portal=sandbox)
    # our own bucket drains very slowly, so what one batch takes from it stays visible
    portal, _ = portal_upsert(slug="bt", base_url=f"{live_server.url}/sandbox/bt", auth_mode="webhook",
                              secrets={"webhook_code": code}, fields={"webhook_user_id": str(user_id)},
                              rate_per_second=0.001, burst=1000)
    return portal, sandbox


@pytest.fixture
def agents(make_agent, sandbox):
    portal = sandbox[0]
    return (make_agent("batch-a", portal=portal, write="auto"),
            make_agent("batch-b", portal=portal, write="auto"))


def submit(agent, portal, steps):
    plan = services.plan_submit(agent=agent, portal=portal, steps=steps).plan
    assert plan.status == "approved"
    return plan


def requests_seen(sb):
    return sandbox_counters(portal=sb)["requests_total"]


def test_ready_plans_of_two_agents_go_as_one_batch_each_with_its_own_result(sandbox, agents):
    portal, sb = sandbox
    a, b = agents
    plans = [submit(a if i % 2 else b, portal, add(f"lead {i}")) for i in range(6)]
    before_requests = requests_seen(sb)
    before_level = limiter.limiter_level(portal_id=portal.pk, rate=portal.rate_per_second)

    outcome = executor.execute(plan_id=plans[0].pk)

    assert outcome.status == "succeeded" and outcome.companions == ()
    assert requests_seen(sb) - before_requests == 1  # one HTTP request for six plans
    assert sandbox_method_calls(portal=sb, method="crm.lead.add") == 6
    # the batch counted once against our shared bucket
    after_level = limiter.limiter_level(portal_id=portal.pk, rate=portal.rate_per_second)
    assert after_level - before_level == pytest.approx(1.0, abs=0.05)
    leads = {lead["TITLE"]: int(lead["ID"]) for lead in sandbox_records(portal=sb, entity="lead")}
    for i, plan in enumerate(plans):
        plan.refresh_from_db()
        assert plan.status == "succeeded"
        # only its own step, with its own new id: nothing of another plan (or agent) is in it
        assert list(plan.result["steps"]) == ["create"]
        assert plan.result["steps"]["create"]["result"] == leads[f"lead {i}"]
        assert plan.error is None
        (attempt,) = ExecutionAttempt.objects.filter(plan=plan)
        assert attempt.outcome == "answered" and attempt.detail == {"batch": 6}
        trail = [(e.action, e.data.get("from"), e.data.get("to")) for e in
                 AuditEntry.objects.filter(plan_id=plan.pk).order_by("created_at", "pk")]
        assert trail == [("plan.submitted", None, None), ("plan.transition", "submitted", "approved"),
                         ("plan.transition", "approved", "executing"), ("plan.attempt", None, None),
                         ("plan.transition", "executing", "succeeded")]
    # the claimed plans' own queued tasks find them no longer approved and do nothing
    assert all(executor.execute(plan_id=p.pk).status == "skipped" for p in plans[1:])
    assert sandbox_method_calls(portal=sb, method="crm.lead.add") == 6


def test_a_refused_command_fails_only_its_own_plan(sandbox, agents):
    portal, sb = sandbox
    a, b = agents
    good = submit(a, portal, add("fine"))
    bad = submit(b, portal, get(999999))
    before = requests_seen(sb)
    executor.execute(plan_id=good.pk)
    good.refresh_from_db()
    bad.refresh_from_db()
    assert requests_seen(sb) - before == 1
    assert good.status == "succeeded" and good.error is None
    assert bad.status == "failed" and bad.error["code"] == "step_failed"
    assert list(bad.error["steps"]) == ["read"] and list(bad.result["steps"]) == ["read"]
    assert "fine" not in str(bad.result) and "fine" not in str(bad.error)


def test_a_lost_batch_answer_puts_every_write_in_reconciliation_and_retries_the_reads(sandbox, agents,
                                                                                     queued_executions):
    from apps.plans.tasks import execute_plan

    portal, sb = sandbox
    a, b = agents
    first = submit(a, portal, add("w1"))
    write2 = submit(b, portal, add("w2"))
    read = submit(a, portal, [{"name": "list", "method": "crm.lead.list", "params": {}}])
    sandbox_set_faults(portal=sb, fail_5xx=1, when="after", methods=["batch"])
    queued_executions.clear()

    assert execute_plan(str(first.pk)) == "needs_reconciliation"

    assert len(sandbox_records(portal=sb, entity="lead")) == 2  # the writes did run; the answer was lost
    for plan in (first, write2):
        plan.refresh_from_db()
        assert plan.status == "needs_reconciliation" and plan.error["code"] == "outcome_unknown"
        assert plan.attempts.get().outcome == "unknown"
    read.refresh_from_db()
    assert read.status == "executing" and read.attempts.get().outcome == "unknown"
    # the read's retry is queued through the one enqueue, for its own attempt
    assert queued_executions == [((str(read.pk),), {"attempt": 1}, queued_executions[0][2])]
    assert queued_executions[0][2] > 0
    assert execute_plan(str(read.pk), attempt=1) == "succeeded"
    # the writes are never sent again
    assert sandbox_method_calls(portal=sb, method="crm.lead.add") == 2


def test_a_batch_the_portal_refused_whole_is_retried_plan_by_plan(sandbox, agents, queued_executions):
    from apps.plans.tasks import execute_plan

    portal, sb = sandbox
    a, b = agents
    plans = [submit(a, portal, add("x")), submit(b, portal, add("y"))]
    sandbox_set_limits(portal=sb, rate=0.001, burst=1)
    BitrixClient(portal).call("server.time", {})  # the portal's bucket is now full: 503 next
    queued_executions.clear()
    assert execute_plan(str(plans[0].pk)) == "executing"
    assert sandbox_records(portal=sb, entity="lead") == []
    assert sorted(args[0] for args, kwargs, _ in queued_executions) == sorted(str(p.pk) for p in plans)
    assert all(kwargs == {"attempt": 1} and countdown > 0 for _, kwargs, countdown in queued_executions)
    for plan in plans:
        assert plan.attempts.get().detail["code"] == "QUERY_LIMIT_EXCEEDED"
    sandbox_set_limits(portal=sb, rate=100, burst=1000)
    # the refusal filled our own bucket too (it drains very slowly here): empty it
    PortalLimiter.objects.filter(pk=portal.pk).update(level=0)
    for plan in plans:
        assert execute_plan(str(plan.pk), attempt=1) == "succeeded"
    assert sorted(lead["TITLE"] for lead in sandbox_records(portal=sb, entity="lead")) == ["x", "y"]


def test_at_most_fifty_plans_in_one_batch(sandbox, agents):
    portal, sb = sandbox
    a, _ = agents
    plans = [submit(a, portal, add(f"n{i}")) for i in range(53)]
    before = requests_seen(sb)
    executor.execute(plan_id=plans[0].pk)
    statuses = [Plan.objects.get(pk=p.pk).status for p in plans]
    assert statuses.count("succeeded") == 50 and statuses.count("approved") == 3
    assert requests_seen(sb) - before == 1
    executor.execute(plan_id=next(p.pk for p, s in zip(plans, statuses, strict=True) if s == "approved"))
    assert Plan.objects.filter(status="succeeded").count() == 53
    assert requests_seen(sb) - before == 2
    assert sandbox_method_calls(portal=sb, method="crm.lead.add") == 53


def test_each_companion_passes_its_own_preflight(sandbox, agents):
    portal, sb = sandbox
    a, b = agents
    mine = submit(a, portal, add("allowed"))
    theirs = submit(b, portal, add("revoked"))
    tampered = submit(a, portal, add("tampered"))
    PackGrant.objects.filter(agent=b).delete()
    Plan.objects.filter(pk=tampered.pk).update(steps=add("something else"))
    executor.execute(plan_id=mine.pk)
    assert Plan.objects.get(pk=mine.pk).status == "succeeded"
    theirs = Plan.objects.get(pk=theirs.pk)
    assert theirs.status == "failed" and theirs.error["code"] == "policy_refused" and theirs.attempts.count() == 0
    tampered = Plan.objects.get(pk=tampered.pk)
    assert tampered.status == "failed" and tampered.error["code"] == "content_hash_mismatch"
    assert [lead["TITLE"] for lead in sandbox_records(portal=sb, entity="lead")] == ["allowed"]


def test_held_methods_and_previewed_plans_are_left_out(sandbox, agents):
    portal, sb = sandbox
    a, b = agents
    leader = submit(a, portal, get(1))
    held = submit(b, portal, add("held"))
    previewed = submit(a, portal, add("previewed"))
    other = submit(b, portal, [{"name": "list", "method": "crm.lead.list", "params": {}}])
    limiter.method_block_hold(portal_id=portal.pk, method="crm.lead.add", time_info={
        "operating_reset_at": time.time() + 600})
    PlanPreview.objects.create(plan=previewed, steps={})
    before = requests_seen(sb)
    executor.execute(plan_id=leader.pk)
    assert requests_seen(sb) - before == 1
    assert Plan.objects.get(pk=other.pk).attempts.get().detail == {"batch": 2}  # batched with the leader
    assert Plan.objects.get(pk=other.pk).status == "succeeded"
    assert Plan.objects.get(pk=held.pk).status == "approved"
    assert Plan.objects.get(pk=previewed.pk).status == "approved"
    assert sandbox_method_calls(portal=sb, method="crm.lead.add") == 0


def test_a_lone_plan_is_sent_as_a_plain_call(sandbox, agents):
    portal, sb = sandbox
    a, _ = agents
    plan = submit(a, portal, add("alone"))
    assert executor.execute(plan_id=plan.pk).status == "succeeded"
    assert plan.attempts.get().detail is None  # not a batch
    assert sandbox_method_calls(portal=sb, method="crm.lead.add") == 1
    lead = sandbox_records(portal=sb, entity="lead")[0]
    assert Plan.objects.get(pk=plan.pk).result["steps"]["create"]["result"] == int(lead["ID"])


def test_a_command_over_its_operating_time_is_retried_alone_and_its_method_held(sandbox, agents):
    portal, sb = sandbox
    a, b = agents
    # crm.lead.list costs more than the limit: after one run it is refused until the reset
    sandbox_set_limits(portal=sb, operating_limit=5, method_costs={"crm.lead.list": 10})
    BitrixClient(portal).call("crm.lead.list", {})
    writer = submit(a, portal, add("still written"))
    lister = submit(b, portal, [{"name": "list", "method": "crm.lead.list", "params": {}}])
    outcome = executor.execute(plan_id=writer.pk)
    assert outcome.status == "succeeded"
    lister.refresh_from_db()
    assert lister.status == "executing"
    attempt = lister.attempts.get()
    assert attempt.outcome == "not_sent" and attempt.detail["code"] == "OPERATION_TIME_LIMIT"
    (retry,) = outcome.companions
    assert retry[0] == str(lister.pk) and retry[1] == 1 and retry[2] > 1
    # the method is now held: its retry is deferred without a request
    before = requests_seen(sb)
    again = executor.execute(plan_id=lister.pk, attempt=1)
    assert again.status == "executing" and again.retry_in > 1
    assert requests_seen(sb) == before


def test_a_batch_the_portal_refuses_for_its_credential_is_not_sent_and_marks_it_broken(sandbox, agents):
    """The webhook was deleted on the portal: the batch is refused before any command runs. Each
    plan fails with the portal's reason, each attempt says nothing was sent (not "answered"), and
    the credential is marked broken so the next plans are refused here."""
    from apps.portals.models import Credential
    from apps.sandbox.models import SandboxWebhook

    portal, sb = sandbox
    a, b = agents
    plans = [submit(a, portal, add("x1")), submit(b, portal, add("x2"))]
    SandboxWebhook.objects.filter(portal=sb).delete()

    assert executor.execute(plan_id=plans[0].pk).status == "failed"

    assert sandbox_records(portal=sb, entity="lead") == []
    for plan in plans:
        plan.refresh_from_db()
        assert plan.status == "failed" and plan.error["code"] == "portal_error"
        assert [a.outcome for a in plan.attempts.all()] == ["not_sent"]
    assert Credential.objects.get(portal=portal).status == "broken"
