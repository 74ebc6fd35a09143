"""Tests written against the mutants of apps/plans/services.py that its test set let survive
(mutmut 2.5.1, `make mutate MUTATE_ONLY=services`; bench/README.md lists them): which portal an
agent reaches, the exact refusals a submission, a decision and a settlement give, and what the
sweeps (expiry, stale executions) do to each plan they find."""

import datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.core.exceptions import DeniedByPolicy, InvalidRequest, NotAllowed, NotFound, NotGranted
from apps.plans import executor, services
from apps.plans.models import ExecutionAttempt, Plan
from apps.plans.states import StaleState, transition
from apps.portals.services import portal_upsert
from tests.integration.audit_helpers import last_seq, new_entries

pytestmark = pytest.mark.django_db
ADD = [{"name": "call", "method": "crm.lead.add", "params": {"fields": {"TITLE": "t"}}}]


def other_portal(slug="other"):
    portal, _ = portal_upsert(slug=slug, base_url=f"https://{slug}.bitrix24.com", auth_mode="webhook",
                              secrets={"webhook_code": "hook-" + slug}, fields={"webhook_user_id": "1"})
    return portal


def test_an_agent_reaches_a_portal_it_holds_a_grant_on_with_its_grants(agent, portal):
    found = services.portal_for_agent(agent=agent, slug="acme")
    assert found.pk == portal.pk
    assert [row["pack"] for row in found.grant_rows] == ["core"]
    # the grants came with the portal: evaluating a submission reads none again
    with CaptureQueriesContext(connection) as queries:
        services._evaluate(agent=agent, portal=found, steps=ADD, single_call=False)
    assert not [q for q in queries.captured_queries if "policy_packgrant" in q["sql"]]


def test_a_submission_to_the_portal_found_for_the_agent_is_judged_by_its_grants(agent, portal):
    found = services.portal_for_agent(agent=agent, slug="acme")
    plan = services.plan_submit(agent=agent, portal=found, steps=ADD).plan
    assert (plan.status, plan.packs) == ("pending_approval", ["core"])


@pytest.mark.parametrize("case", ["no_grant", "deactivated", "unknown"])
def test_a_portal_the_agent_may_not_use_answers_like_one_that_does_not_exist(make_agent, portal, case):
    agent = make_agent("agent-b", portal=portal)
    slug = "acme"
    if case == "no_grant":
        slug = other_portal().slug
    elif case == "deactivated":
        type(portal).objects.filter(pk=portal.pk).update(is_active=False)
    else:
        slug = "nowhere"
    with pytest.raises(NotFound) as caught:
        services.portal_for_agent(agent=agent, slug=slug)
    assert caught.value.as_dict() == {
        "code": "not_found", "message": f"No portal {slug!r} is available to this agent.", "field": "portal"}


def test_a_plan_submitted_without_a_reason_or_callback_has_neither(agent, portal):
    plan = services.plan_submit(agent=agent, portal=portal, steps=ADD).plan
    plan = Plan.objects.get(pk=plan.pk)
    assert (plan.reason, plan.callback_url) == ("", "")


def test_an_idempotency_key_without_the_requests_hash_is_a_programming_error(agent, portal):
    with pytest.raises(ValueError, match=r"^An idempotent submission needs the request's hash\.$"):
        services.plan_submit(agent=agent, portal=portal, steps=ADD, idempotency_key="k-1")
    assert not Plan.objects.exists()


def test_a_callback_url_the_plane_would_not_call_refuses_the_submission(agent, portal):
    with pytest.raises(InvalidRequest) as caught:
        services.plan_submit(agent=agent, portal=portal, steps=ADD, callback_url="ftp://example.com/hook")
    assert caught.value.as_dict() == {
        "code": "invalid_request", "message": "The callback URL must be http:// or https:// with a host.",
        "field": "callback_url"}
    assert not Plan.objects.exists()


@pytest.mark.parametrize(("single_call", "field"), [(True, "method"), (False, "steps")])
def test_a_single_call_without_its_call_names_the_method(agent, portal, single_call, field):
    """A single call is sent as {method, params}: an error about the steps as a whole names
    `method`, the field the client left out."""
    with pytest.raises(InvalidRequest) as caught:
        services.plan_submit(agent=agent, portal=portal, steps=[], single_call=single_call)
    assert caught.value.extra == {"field": field}


def test_an_ungranted_method_is_refused_naming_the_pack_that_would_grant_it(agent, portal):
    steps = [{"name": "order", "method": "sale.order.add", "params": {"fields": {}}}]
    with pytest.raises(NotGranted) as caught:
        services.plan_submit(agent=agent, portal=portal, steps=steps)
    assert caught.value.as_dict() == {
        "code": "not_granted", "message": "No grant covers sale.order.add on this portal; the 'commerce' pack would.",
        "pack": "commerce", "missing": [{"method": "sale.order.add", "packs": ["commerce"]}]}
    assert not Plan.objects.exists()


def test_a_method_no_pack_covers_is_refused_asking_for_a_custom_pack(agent, portal):
    steps = [{"name": "x", "method": "vendor.thing.do", "params": {}}]
    with pytest.raises(NotGranted) as caught:
        services.plan_submit(agent=agent, portal=portal, steps=steps)
    assert caught.value.as_dict() == {
        "code": "not_granted",
        "message": "No grant covers vendor.thing.do on this portal; "
                   "no built-in pack covers it (ask for a custom pack).",
        "pack": None, "missing": [{"method": "vendor.thing.do", "packs": []}]}


def test_a_denied_call_is_refused_with_every_reason_of_the_policy(make_agent, portal):
    agent = make_agent("agent-d", portal=portal, destructive="deny")
    steps = [{"name": "look", "method": "crm.deal.list", "params": {}},
             {"name": "drop", "method": "crm.deal.delete", "params": {"id": 1}}]
    with pytest.raises(DeniedByPolicy) as caught:
        services.plan_submit(agent=agent, portal=portal, steps=steps)
    assert caught.value.as_dict() == {
        "code": "denied_by_policy",
        "message": "step 'look': crm.deal.list (read) granted by core: auto.; "
                   "step 'drop': crm.deal.delete (destructive) is denied by the destructive policy of core.",
        "risk": "destructive"}
    assert not Plan.objects.exists()


def test_a_submission_audits_what_was_submitted_and_where_it_went(agent, portal):
    since = last_seq()
    plan = services.plan_submit(agent=agent, portal=portal, steps=ADD).plan
    entries = [(e.action, e.actor_type, e.actor, str(e.plan_id), e.data) for e in new_entries(since)]
    assert entries == [
        ("plan.submitted", "agent", agent.slug, str(plan.pk),
         {"risk": "write", "methods": ["crm.lead.add"], "outcome": "approve", "content_hash": plan.content_hash}),
        ("plan.transition", "agent", agent.slug, str(plan.pk),
         {"from": "submitted", "to": "pending_approval", "policy": "approve"}),
    ]


def test_a_retry_is_queued_as_the_attempt_it_continues(queued_executions, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        services.enqueue_execution("5b1f1c1e-0000-4000-8000-000000000001", attempt=3, countdown=7.5)
        services.enqueue_execution("5b1f1c1e-0000-4000-8000-000000000002")
    assert queued_executions == [
        (("5b1f1c1e-0000-4000-8000-000000000001",), {"attempt": 3}, 7.5),
        (("5b1f1c1e-0000-4000-8000-000000000002",), {}, None),
    ]


@pytest.mark.parametrize("plan_id", ["5b1f1c1e-0000-4000-8000-000000000001", "not-a-uuid", 17])
def test_deciding_settling_or_cancelling_an_unknown_plan_is_not_found(agent, approver, plan_id):
    for act in (lambda: services.plan_decide(plan_id=plan_id, user=approver, decision="approve"),
                lambda: services.plan_reconcile(plan_id=plan_id, user=approver, succeeded=True),
                lambda: services.plan_cancel(plan_id=plan_id, agent=agent)):
        with pytest.raises(NotFound) as caught:
            act()
        assert caught.value.as_dict() == {"code": "not_found", "message": "No such plan."}


def pending(agent, portal, steps=ADD):
    plan = services.plan_submit(agent=agent, portal=portal, steps=steps).plan
    assert plan.status == "pending_approval"
    return plan


def refusal(exc_type, act) -> dict:
    with pytest.raises(exc_type) as caught:
        act()
    return caught.value.as_dict()


def test_a_decision_is_approve_or_reject_with_a_comment_of_at_most_2000_characters(agent, portal, approver):
    plan = pending(agent, portal)
    assert refusal(InvalidRequest, lambda: services.plan_decide(plan_id=plan.pk, user=approver, decision="ok")) == {
        "code": "invalid_request", "message": "decision must be approve or reject", "field": "decision"}
    too_long = "x" * 2001
    assert refusal(InvalidRequest, lambda: services.plan_decide(
        plan_id=plan.pk, user=approver, decision="approve", comment=too_long)) == {
        "code": "invalid_request", "message": "The comment is longer than 2000 characters.", "field": "comment"}
    assert not plan.approvals.exists()
    decided = services.plan_decide(plan_id=plan.pk, user=approver, decision="approve", comment=" " + "y" * 2000 + " ")
    assert decided.status == "approved"
    assert plan.approvals.get().comment == "y" * 2000


def test_the_refusals_of_a_decision_say_why(agent, portal, approver, make_approver):
    plan = pending(agent, portal)
    stranger = make_approver("carol", portals=[])
    assert refusal(NotAllowed, lambda: services.plan_decide(plan_id=plan.pk, user=stranger, decision="approve")) == {
        "code": "permission_denied", "message": "carol may not approve plans on portal acme."}
    assert refusal(StaleState, lambda: services.plan_decide(
        plan_id=plan.pk, user=approver, decision="approve", seen_hash="f" * 64)) == {
        "code": "conflict", "message": "The plan content is not what was shown; reload it before deciding."}
    services.plan_decide(plan_id=plan.pk, user=approver, decision="reject")
    assert refusal(StaleState, lambda: services.plan_decide(plan_id=plan.pk, user=approver, decision="approve")) == {
        "code": "conflict", "message": "The plan is rejected; only pending plans can be decided.", "status": "rejected"}


def test_an_approver_who_owns_the_agent_is_told_why_they_may_not_decide(make_agent, portal, make_approver):
    owner = make_approver("dave", portals=[portal])
    agent = make_agent("owned", portal=portal, owner=owner)
    plan = pending(agent, portal)
    assert refusal(NotAllowed, lambda: services.plan_decide(plan_id=plan.pk, user=owner, decision="approve")) == {
        "code": "permission_denied", "message": "The owner of the submitting agent cannot decide its plans."}
    assert not plan.approvals.exists()


def test_the_approval_that_completes_a_plan_is_recorded_and_the_plan_queued_for_a_full_ttl(
        agent, portal, approver, queued_executions, django_capture_on_commit_callbacks, settings):
    plan = pending(agent, portal)
    since = last_seq()
    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        decided = services.plan_decide(plan_id=plan.pk, user=approver, decision="approve")
    after = timezone.now()
    assert [(e.action, e.actor_type, e.actor, e.data) for e in new_entries(since)] == [
        ("plan.approval", "user", "alice", {"decision": "approve", "comment": "", "content_hash": plan.content_hash}),
        ("plan.transition", "user", "alice", {"from": "pending_approval", "to": "approved", "approvals": 1}),
    ]
    approval = plan.approvals.get()
    assert (approval.user, approval.decision, approval.comment, approval.content_hash) == (
        approver, "approve", "", plan.content_hash)
    assert queued_executions == [((str(plan.pk),), {}, None)]
    ttl = datetime.timedelta(seconds=settings.PLAN_TTL)
    assert before + ttl <= Plan.objects.get(pk=plan.pk).expires_at <= after + ttl
    assert decided.status == "approved"


def test_a_rejection_ends_the_plan_and_queues_nothing(agent, portal, approver, queued_executions,
                                                     django_capture_on_commit_callbacks):
    plan = pending(agent, portal)
    since = last_seq()
    with django_capture_on_commit_callbacks(execute=True):
        decided = services.plan_decide(plan_id=plan.pk, user=approver, decision="reject", comment="no")
    assert decided.status == "rejected" and queued_executions == []
    assert [(e.action, e.data.get("to"), e.data.get("decision")) for e in new_entries(since)] == [
        ("plan.approval", None, "reject"), ("plan.transition", "rejected", None)]


# ---------------------------------------------------------------- cancel, expiry, stale executions, settling

LIST = [{"name": "look", "method": "crm.lead.list", "params": {}}]


def approved(make_agent, portal, steps=ADD, slug="auto-agent"):
    plan = services.plan_submit(agent=make_agent(slug, portal=portal, write="auto"), portal=portal, steps=steps).plan
    assert plan.status == "approved"
    return plan


def test_an_agent_cancels_its_own_plans_before_they_run_and_only_those(agent, portal, make_agent):
    waiting = pending(agent, portal)
    other = make_agent("other", portal=portal)
    assert refusal(NotFound, lambda: services.plan_cancel(plan_id=waiting.pk, agent=other)) == {
        "code": "not_found", "message": "No such plan."}
    since = last_seq()
    assert services.plan_cancel(plan_id=waiting.pk, agent=agent).status == "cancelled"
    assert [(e.actor, e.data) for e in new_entries(since)] == [
        (agent.slug, {"from": "pending_approval", "to": "cancelled"})]
    ready = approved(make_agent, portal)
    assert services.plan_cancel(plan_id=ready.pk, agent=ready.agent).status == "cancelled"
    running = transition(plan=approved(make_agent, portal, slug="auto-2"), source="approved", target="executing")
    assert refusal(StaleState, lambda: services.plan_cancel(plan_id=running.pk, agent=running.agent)) == {
        "code": "conflict", "message": "The plan is executing; only plans not yet executing can be cancelled.",
        "status": "executing"}


def test_plans_expire_exactly_at_their_deadline_whether_waiting_or_approved(agent, portal, make_agent, settings):
    waiting = pending(agent, portal)
    ready = approved(make_agent, portal)
    running = transition(plan=approved(make_agent, portal, slug="auto-2"), source="approved", target="executing")
    deadline = max(Plan.objects.filter(pk__in=[waiting.pk, ready.pk]).values_list("expires_at", flat=True))
    Plan.objects.filter(pk__in=[waiting.pk, ready.pk, running.pk]).update(expires_at=deadline)
    assert services.plans_expire_due(now=deadline - datetime.timedelta(microseconds=1)) == 0
    since = last_seq()
    assert services.plans_expire_due(now=deadline) == 2
    assert {p.pk: p.status for p in Plan.objects.all()} == {
        waiting.pk: "expired", ready.pk: "expired", running.pk: "executing"}
    assert sorted((e.data["from"], e.actor_type, e.data["ttl"]) for e in new_entries(since)) == [
        ("approved", "system", settings.PLAN_TTL), ("pending_approval", "system", settings.PLAN_TTL)]


def test_the_expiry_sweep_uses_the_current_time_by_default(agent, portal):
    plan = pending(agent, portal)
    Plan.objects.filter(pk=plan.pk).update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    assert services.plans_expire_due() == 1
    assert Plan.objects.get(pk=plan.pk).status == "expired"


def executing(make_agent, portal, steps, slug):
    return transition(plan=approved(make_agent, portal, steps, slug=slug), source="approved", target="executing")


def test_a_plan_whose_worker_died_before_sending_runs_again_as_the_attempt_it_lost(
        make_agent, portal, queued_executions, django_capture_on_commit_callbacks):
    write = executing(make_agent, portal, ADD, "w")
    read = executing(make_agent, portal, LIST, "r")
    now = timezone.now() + services.stale_after() + datetime.timedelta(seconds=1)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.plans_recover_stale(now=now) == 2
    attempts = {a.plan_id: (a.number, a.outcome, a.detail) for a in ExecutionAttempt.objects.all()}
    # a write never sent is known not sent; a read may have been sent, and is safe to send again
    assert attempts == {write.pk: (1, "not_sent", {"code": "worker_lost"}),
                        read.pk: (1, "unknown", {"code": "worker_lost"})}
    assert sorted(queued_executions) == sorted([((str(write.pk),), {"attempt": 1}, None),
                                                ((str(read.pk),), {"attempt": 1}, None)])
    assert {p.status for p in Plan.objects.all()} == {"executing"}
    assert set(Plan.objects.values_list("updated_at", flat=True)) == {now}


def test_a_write_whose_worker_died_while_sending_waits_for_an_approver(make_agent, portal, queued_executions,
                                                                       django_capture_on_commit_callbacks):
    plan = executing(make_agent, portal, ADD, "w")
    attempt = executor.record_attempt(plan)
    read = executing(make_agent, portal, LIST, "r")
    read_attempt = executor.record_attempt(read)
    now = timezone.now() + services.stale_after() + datetime.timedelta(seconds=1)
    since = last_seq()
    with django_capture_on_commit_callbacks(execute=True):
        assert services.plans_recover_stale(now=now) == 2
    plan = Plan.objects.get(pk=plan.pk)
    assert plan.status == "needs_reconciliation"
    assert plan.error == {"code": "outcome_unknown",
                          "message": "The worker stopped while the call was in flight; check the portal and settle "
                                     "the plan."}
    attempt = ExecutionAttempt.objects.get(pk=attempt.pk)
    assert (attempt.outcome, attempt.detail) == ("unknown", {"code": "worker_lost"})
    assert [e.data for e in new_entries(since) if str(e.plan_id) == str(plan.pk)] == [
        {"from": "executing", "to": "needs_reconciliation", "error": "worker_lost"}]
    # the read is sent again as the attempt it lost; the write is not
    assert ExecutionAttempt.objects.get(pk=read_attempt.pk).outcome == "unknown"
    assert queued_executions == [((str(read.pk),), {"attempt": 1}, None)]


def test_only_plans_unchanged_for_the_stale_threshold_are_recovered(make_agent, portal):
    plan = executing(make_agent, portal, ADD, "w")
    stale_at = Plan.objects.get(pk=plan.pk).updated_at + services.stale_after()
    assert services.plans_recover_stale(now=stale_at - datetime.timedelta(microseconds=1)) == 0
    assert services.plans_recover_stale(now=stale_at) == 1


def test_a_plan_waiting_for_its_scheduled_retry_is_not_recovered(make_agent, portal, queued_executions):
    plan = executing(make_agent, portal, LIST, "r")
    executor.close_attempt(executor.record_attempt(plan), "not_sent", {"code": "rate_limited"})
    now = timezone.now() + services.stale_after() + datetime.timedelta(seconds=1)
    assert services.plans_recover_stale(now=now) == 0
    assert plan.attempts.get().outcome == "not_sent" and queued_executions == []


def test_the_stale_threshold_is_the_tasks_hard_limit_plus_a_minute():
    from apps.plans.tasks import execute_plan

    assert services.stale_after() == datetime.timedelta(seconds=execute_plan.time_limit + 60)


def test_the_stale_sweep_uses_the_current_time_by_default(make_agent, portal, monkeypatch):
    plan = executing(make_agent, portal, ADD, "w")
    Plan.objects.filter(pk=plan.pk).update(updated_at=timezone.now() - services.stale_after())
    assert services.plans_recover_stale() == 1


LOST = {"code": "outcome_unknown", "message": "The answer was lost."}


def unknown(make_agent, portal):
    plan = executing(make_agent, portal, ADD, "w")
    return transition(plan=plan, source="executing", target="needs_reconciliation", error=LOST)


@pytest.mark.parametrize(("succeeded", "status", "error"), [
    (True, "succeeded", LOST), (False, "failed", {**LOST, "reconciled": "failed", "comment": "not there"})])
def test_an_approver_settles_an_unknown_outcome_and_it_is_audited(make_agent, portal, approver, succeeded, status,
                                                                  error):
    plan = unknown(make_agent, portal)
    since = last_seq()
    settled = services.plan_reconcile(plan_id=plan.pk, user=approver, succeeded=succeeded, comment="not there")
    assert (settled.status, Plan.objects.get(pk=plan.pk).error) == (status, error)
    assert [(e.action, e.actor, e.data) for e in new_entries(since)] == [
        ("plan.reconciled", "alice", {"succeeded": succeeded, "comment": "not there"}),
        ("plan.transition", "alice", {"from": "needs_reconciliation", "to": status})]


def test_settling_without_a_comment_records_none(make_agent, portal, approver):
    plan = unknown(make_agent, portal)
    since = last_seq()
    services.plan_reconcile(plan_id=plan.pk, user=approver, succeeded=False)
    assert Plan.objects.get(pk=plan.pk).error == {**LOST, "reconciled": "failed", "comment": ""}
    assert new_entries(since)[0].data == {"succeeded": False, "comment": ""}


def test_the_refusals_of_settling_say_why(make_agent, portal, approver, make_approver):
    plan = unknown(make_agent, portal)
    stranger = make_approver("carol", portals=[])
    assert refusal(NotAllowed, lambda: services.plan_reconcile(plan_id=plan.pk, user=stranger, succeeded=True)) == {
        "code": "permission_denied", "message": "carol may not settle plans on portal acme."}
    services.plan_reconcile(plan_id=plan.pk, user=approver, succeeded=True)
    assert refusal(StaleState, lambda: services.plan_reconcile(plan_id=plan.pk, user=approver, succeeded=True)) == {
        "code": "conflict", "message": "The plan is succeeded, not needs_reconciliation.", "status": "succeeded"}


def test_a_plan_that_moves_on_during_the_expiry_sweep_is_left_alone_and_the_sweep_goes_on(
        agent, portal, monkeypatch):
    plans = [pending(agent, portal, [{**ADD[0], "name": f"call{i}"}]) for i in range(3)]
    now = timezone.now() + datetime.timedelta(days=365)
    listed = list(Plan.objects.filter(status__in=["pending_approval", "approved"], expires_at__lte=now)
                  .values_list("pk", flat=True))
    assert sorted(listed) == sorted(p.pk for p in plans)
    real = services.transition

    def transition_then_another_moves(**kwargs):
        if kwargs["plan"].pk == listed[0]:  # meanwhile the agent cancels the next plan of the sweep
            Plan.objects.filter(pk=listed[1]).update(status="cancelled")
        return real(**kwargs)

    monkeypatch.setattr(services, "transition", transition_then_another_moves)
    assert services.plans_expire_due(now=now) == 2
    assert [Plan.objects.get(pk=pk).status for pk in listed] == ["expired", "cancelled", "expired"]


def test_a_plan_waiting_for_its_retry_does_not_stop_the_sweep_for_the_others(make_agent, portal):
    plans = [executing(make_agent, portal, ADD, f"w{i}") for i in range(2)]
    now = timezone.now() + services.stale_after() + datetime.timedelta(seconds=1)
    listed = list(Plan.objects.filter(status="executing", updated_at__lte=now - services.stale_after())
                  .values_list("pk", flat=True))
    assert sorted(listed) == sorted(p.pk for p in plans)
    waiting, lost = (Plan.objects.get(pk=pk) for pk in listed)
    executor.close_attempt(executor.record_attempt(waiting), "not_sent", {"code": "rate_limited"})
    executor.record_attempt(lost)
    assert services.plans_recover_stale(now=now) == 1
    assert [Plan.objects.get(pk=pk).status for pk in listed] == ["executing", "needs_reconciliation"]


def test_a_plan_another_run_took_over_does_not_stop_the_sweep_for_the_others(make_agent, portal, monkeypatch):
    plans = [executing(make_agent, portal, ADD, f"w{i}") for i in range(2)]
    now = timezone.now() + services.stale_after() + datetime.timedelta(seconds=1)
    listed = list(Plan.objects.filter(status="executing", updated_at__lte=now - services.stale_after())
                  .values_list("pk", flat=True))
    assert sorted(listed) == sorted(p.pk for p in plans)
    real = executor.record_attempt
    monkeypatch.setattr(executor, "record_attempt", lambda plan: None if plan.pk == listed[0] else real(plan))
    assert services.plans_recover_stale(now=now) == 1
    assert [Plan.objects.get(pk=pk).attempts.count() for pk in listed] == [0, 1]


def test_a_submission_is_a_list_of_steps_unless_said_otherwise(agent, portal):
    steps = [{"name": "call", "method": "crm lead list", "params": {}}]
    with pytest.raises(InvalidRequest) as caught:
        services.plan_submit(agent=agent, portal=portal, steps=steps)
    assert caught.value.extra["field"] == "steps.0.method"
