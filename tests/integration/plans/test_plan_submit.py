"""The plan_submit service on its own: idempotency, evaluation, dry run, creation, auto-approval."""

import pytest

from apps.audit import registry as audit_events
from apps.audit.models import AuditEntry
from apps.core.exceptions import IdempotencyInProgress, IdempotencyMismatch, InvalidRequest, NotGranted
from apps.plans import services
from apps.plans.models import IdempotencyRecord, Plan

pytestmark = pytest.mark.django_db

READ = [{"name": "call", "method": "crm.lead.list", "params": {}}]
WRITE = [{"name": "call", "method": "crm.lead.add", "params": {"fields": {"TITLE": "x"}}}]
NOT_GRANTED = [{"name": "call", "method": "im.message.add", "params": {"MESSAGE": "hi"}}]


def submit(agent, portal, steps, **kwargs):
    return services.plan_submit(agent=agent, portal=portal, steps=steps, **kwargs)


def test_a_read_is_approved_and_queued_when_the_transaction_commits(
        agent, portal, django_capture_on_commit_callbacks, queued_executions):
    with django_capture_on_commit_callbacks() as callbacks:
        submission = submit(agent, portal, READ, reason="look")
    plan = submission.plan
    assert not submission.replayed and submission.dry_run is None
    assert (plan.status, plan.approvals_required, plan.reason) == ("approved", 0, "look")
    assert queued_executions == []
    for callback in callbacks:
        callback()
    assert queued_executions == [((str(plan.pk),), {}, None)]
    actions = list(AuditEntry.objects.filter(plan_id=str(plan.pk)).order_by("pk").values_list("action", "data__to"))
    assert actions == [(audit_events.PLAN_SUBMITTED, None), (audit_events.PLAN_TRANSITION, "approved")]


def test_a_write_waits_for_approval_and_is_not_queued(agent, portal, django_capture_on_commit_callbacks,
                                                      queued_executions):
    with django_capture_on_commit_callbacks(execute=True):
        plan = submit(agent, portal, WRITE).plan
    assert (plan.status, plan.approvals_required, plan.risk) == ("pending_approval", 1, "write")
    assert Plan.objects.get(pk=plan.pk).status == "pending_approval"
    assert queued_executions == []


def test_steps_are_stored_as_the_policy_normalised_them(agent, portal):
    plan = submit(agent, portal, [{"name": "call", "method": "/CRM.Lead.List.json"}]).plan
    assert plan.steps == [{"name": "call", "method": "crm.lead.list", "params": {}}]


def test_dry_run_answers_without_writing_anything(agent, portal):
    audit_before = AuditEntry.objects.count()
    read = submit(agent, portal, READ, dry_run=True, idempotency_key="k", request_hash="h").dry_run
    write = submit(agent, portal, WRITE, dry_run=True).dry_run
    refused = submit(agent, portal, NOT_GRANTED, dry_run=True).dry_run
    assert (read.allowed, read.would_be, read.approvals_required) == (True, "approved", 0)
    assert (write.allowed, write.would_be, write.approvals_required, write.risk) == (True, "pending_approval", 1,
                                                                                      "write")
    assert (refused.allowed, refused.would_be, refused.outcome) == (False, None, "not_granted")
    assert refused.missing and refused.missing[0]["method"] == "im.message.add"
    assert read.steps == READ and "core" in read.packs
    assert Plan.objects.count() == 0 and IdempotencyRecord.objects.count() == 0
    assert AuditEntry.objects.count() == audit_before


def test_the_dry_run_and_the_plan_agree_on_the_status(agent, portal):
    for steps in (READ, WRITE):
        assert submit(agent, portal, steps, dry_run=True).dry_run.would_be == submit(agent, portal, steps).plan.status


def test_a_refusal_creates_nothing_and_releases_the_key(agent, portal):
    with pytest.raises(NotGranted) as refused:
        submit(agent, portal, NOT_GRANTED, idempotency_key="k-1", request_hash="first")
    assert refused.value.extra["missing"][0]["method"] == "im.message.add"
    assert Plan.objects.count() == 0 and IdempotencyRecord.objects.count() == 0
    assert submit(agent, portal, WRITE, idempotency_key="k-1", request_hash="second").plan.status == "pending_approval"


def test_the_key_binds_to_the_plan_and_an_identical_request_replays_it(agent, portal):
    first = submit(agent, portal, WRITE, idempotency_key="k-1", request_hash="same")
    again = submit(agent, portal, WRITE, idempotency_key="k-1", request_hash="same")
    assert not first.replayed and again.replayed
    assert again.plan.pk == first.plan.pk and Plan.objects.count() == 1
    assert IdempotencyRecord.objects.get(agent=agent, key="k-1").plan_id == first.plan.pk


def test_the_same_key_with_another_request_is_a_mismatch(agent, portal):
    submit(agent, portal, WRITE, idempotency_key="k-1", request_hash="one")
    with pytest.raises(IdempotencyMismatch):
        submit(agent, portal, READ, idempotency_key="k-1", request_hash="two")
    assert Plan.objects.count() == 1


def test_a_key_still_in_flight_is_in_progress(agent, portal):
    IdempotencyRecord.objects.create(agent=agent, key="busy", request_hash="h")
    with pytest.raises(IdempotencyInProgress):
        submit(agent, portal, WRITE, idempotency_key="busy", request_hash="h")
    assert Plan.objects.count() == 0
    assert IdempotencyRecord.objects.filter(key="busy").exists()  # the owner's row is not released by us


def test_keys_are_per_agent(agent, portal, make_agent):
    other = make_agent("agent-b", portal=portal)
    mine = submit(agent, portal, WRITE, idempotency_key="shared", request_hash="h").plan
    theirs = submit(other, portal, WRITE, idempotency_key="shared", request_hash="h")
    assert not theirs.replayed and theirs.plan.pk != mine.pk


def test_a_key_needs_the_request_hash(agent, portal):
    with pytest.raises(ValueError):
        submit(agent, portal, WRITE, idempotency_key="k-1")
    assert IdempotencyRecord.objects.count() == 0


def test_a_failure_while_creating_rolls_back_the_plan_and_releases_the_key(agent, portal, monkeypatch):
    def broken_audit(**kwargs):
        raise RuntimeError("audit store down")

    monkeypatch.setattr(services, "audit_record", broken_audit)
    with pytest.raises(RuntimeError):
        submit(agent, portal, WRITE, idempotency_key="k-1", request_hash="h")
    assert Plan.objects.count() == 0 and IdempotencyRecord.objects.count() == 0


@pytest.mark.parametrize("steps, single_call, field", [
    ([{"name": "call", "method": "crm lead list", "params": {}}], True, "method"),
    ([{"name": "call", "method": "crm lead list", "params": {}}], False, "steps.0.method"),
    ([{"name": "call", "method": "crm.lead.list", "params": ["x"]}], True, "params"),
    ([{"name": "call", "method": "crm.lead.list", "params": ["x"]}], False, "steps.0.params"),
])
def test_errors_name_the_field_the_client_sent(agent, portal, steps, single_call, field):
    for dry_run in (False, True):
        with pytest.raises(InvalidRequest) as error:
            submit(agent, portal, steps, single_call=single_call, dry_run=dry_run)
        assert error.value.extra["field"] == field
    assert Plan.objects.count() == 0
