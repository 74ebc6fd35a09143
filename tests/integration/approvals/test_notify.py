"""Approvers are told: an email with a link at once (one a minute, the rest as a digest), a
Bitrix24 notification where they have a user id on the portal, a reminder at half the plan's
lifetime, an escalation to the fallback group at 80 %; failures are recorded, plans untouched."""

import datetime

import pytest
from django.contrib.auth.models import Group
from django.core import mail
from django.utils import timezone

from apps.approvals import notify
from apps.approvals.models import ApproverBitrixUser, Mailbox, Notice, PortalEscalation
from apps.plans.models import Plan
from apps.plans.services import plan_decide, plan_submit
from apps.portals.models import AuthMode, Credential, Portal
from tests.integration.bitrix.stub import StubServer

UPDATE = [{"name": "call", "method": "crm.lead.update", "params": {"id": 42, "fields": {"TITLE": "paid"}}}]


@pytest.fixture
def approvers(make_approver, portal):
    users = [make_approver(name, portals=[portal]) for name in ("alice", "bob")]
    for user in users:
        user.email = f"{user.username}@example.com"
        user.save()
    return users


def submit(agent, portal, **kwargs):
    return plan_submit(agent=agent, portal=portal, steps=UPDATE, **kwargs).plan


@pytest.fixture
def queued_runs(monkeypatch):
    """The portal ids whose notice run was queued (the task's `delay`, replaced)."""
    from apps.approvals import tasks

    queued = []
    monkeypatch.setattr(tasks.notify_portal_pending, "delay", lambda *a: queued.append(a))
    monkeypatch.setattr(tasks.read_preimages, "delay", lambda *a: None)
    return queued


def test_a_waiting_plan_queues_its_portals_notice_run_on_commit(agent, portal, approvers, queued_runs,
                                                                 django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        plan = submit(agent, portal)
    assert queued_runs == []  # nothing before the plan is committed
    for callback in callbacks:
        callback()
    assert queued_runs == [(portal.pk,)]
    assert Plan.objects.get(pk=plan.pk).approvers_told_at is None


def test_a_busy_portal_queues_one_run_until_that_run_starts(agent, portal, approvers, queued_runs,
                                                            django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        plans = [submit(agent, portal) for _ in range(3)]
    assert queued_runs == [(portal.pk,)]
    assert notify.notify_waiting(portal_id=portal.pk) == 3  # one run announces them all
    assert all(p.approvers_told_at is not None for p in Plan.objects.filter(pk__in=[p.pk for p in plans]))
    assert Notice.objects.filter(kind="pending").count() == 3 * len(approvers)
    with django_capture_on_commit_callbacks(execute=True):
        later = submit(agent, portal)
    assert queued_runs == [(portal.pk,), (portal.pk,)]  # the run cleared its flag: the next plan wakes a new one
    assert notify.notify_waiting(portal_id=portal.pk) == 1
    assert Notice.objects.filter(kind="pending", plan=later).count() == 2
    assert notify.notify_waiting(portal_id=portal.pk) == 0  # announced once


def test_a_run_flushes_each_approvers_email_once_for_all_its_plans(agent, portal, approvers, monkeypatch):
    from apps.approvals import tasks

    flushes = []
    monkeypatch.setattr(tasks.flush_email, "delay", lambda *a: flushes.append(a))
    monkeypatch.setattr(tasks.flush_email, "delay_on_commit", lambda *a: flushes.append(("per plan", *a)))
    for _ in range(3):
        submit(agent, portal)
    assert notify.notify_waiting(portal_id=portal.pk) == 3
    assert sorted(flushes) == sorted((user.pk,) for user in approvers)  # not one per plan and person
    assert Notice.objects.filter(kind="pending", status="queued").count() == 6  # the flush sends them together


@pytest.fixture
def queued_flushes(monkeypatch):
    """The user ids whose email flush was queued (the task's `delay`, replaced)."""
    from apps.approvals import tasks

    queued = []
    monkeypatch.setattr(tasks.flush_email, "delay", lambda user_id: queued.append(user_id))
    return queued


def test_runs_one_after_another_queue_one_flush_per_person(agent, portal, approvers, queued_flushes):
    """Each run used to queue its own flush per person: a busy portal's runs left hundreds of
    flushes retrying together after the minute between emails, in front of the plans' executions."""
    alice, bob = approvers
    for _ in range(3):
        submit(agent, portal)
        assert notify.notify_waiting(portal_id=portal.pk) == 1
    assert sorted(queued_flushes) == sorted([alice.pk, bob.pk])
    assert notify.flush_email(user_id=alice.pk) is None  # sends the three, and lets go of the flag
    assert mail.outbox[-1].subject == "3 plans wait for your decision"
    submit(agent, portal)
    notify.notify_waiting(portal_id=portal.pk)
    assert sorted(queued_flushes) == sorted([alice.pk, bob.pk, alice.pk])  # bob's first flush is still queued


def test_a_flush_waiting_out_its_minute_stays_the_persons_only_one(agent, portal, approvers, queued_flushes):
    alice = approvers[0]
    submit(agent, portal)
    notify.notify_waiting(portal_id=portal.pk)
    assert notify.flush_email(user_id=alice.pk) is None
    submit(agent, portal)
    notify.notify_waiting(portal_id=portal.pk)
    assert queued_flushes.count(alice.pk) == 2
    wait = notify.flush_email(user_id=alice.pk)  # the minute is not over: it will retry
    assert wait is not None and 0 < wait <= 60
    for _ in range(2):
        submit(agent, portal)
        notify.notify_waiting(portal_id=portal.pk)
    assert queued_flushes.count(alice.pk) == 2  # the retrying flush sends these too
    Mailbox.objects.filter(user=alice).update(last_sent_at=timezone.now() - datetime.timedelta(seconds=61))
    assert notify.flush_email(user_id=alice.pk) is None
    assert [m.subject for m in mail.outbox if m.to == ["alice@example.com"]][-1] == "3 plans wait for your decision"
    submit(agent, portal)
    notify.notify_waiting(portal_id=portal.pk)
    assert queued_flushes.count(alice.pk) == 3  # the flush let go of the flag before it read


def test_a_flush_that_retries_keeps_its_flag_fresh(agent, portal, approvers, queued_flushes):
    """A flush queued long ago (a busy worker) that must wait out the minute sets its flag anew, so
    the flag's ttl counts from its retry and no second flush is queued meanwhile."""
    from apps.approvals.models import EmailWake

    alice = approvers[0]
    Mailbox.objects.create(user=alice, last_sent_at=timezone.now() - datetime.timedelta(seconds=30))
    long_ago = timezone.now() - datetime.timedelta(seconds=notify.EMAIL_WAKE_TTL_SECONDS - 5)
    EmailWake.objects.create(user=alice, requested_at=long_ago)
    before = timezone.now()
    assert 25 < notify.flush_email(user_id=alice.pk) <= 30
    assert EmailWake.objects.get(user=alice).requested_at >= before
    assert notify._EMAIL_WAKE.request(alice.pk, now=long_ago + datetime.timedelta(
        seconds=notify.EMAIL_WAKE_TTL_SECONDS + 1)) is False


def test_a_flush_lost_for_longer_than_the_ttl_is_replaced(agent, portal, approvers, queued_flushes):
    alice = approvers[0]
    start = timezone.now()
    notify._EMAIL_WAKE.arm(alice.pk, now=start)  # a retrying flush that never came back
    assert notify._EMAIL_WAKE.request(alice.pk, now=start + datetime.timedelta(seconds=1)) is False
    late = start + datetime.timedelta(seconds=notify.EMAIL_WAKE_TTL_SECONDS + 1)
    assert notify._EMAIL_WAKE.request(alice.pk, now=late) is True


def test_emails_whose_flush_was_lost_are_flushed_by_the_beat_task(agent, portal, approvers, monkeypatch, caplog):
    from apps.approvals import tasks

    def down(user_id):
        raise OSError("broker unreachable")

    monkeypatch.setattr(tasks.flush_email, "delay", down)
    submit(agent, portal)
    notify.notify_waiting(portal_id=portal.pk)  # told, but their flushes could not be queued
    assert "could not queue the email flush of user" in caplog.text
    queued = Notice.objects.filter(channel="email", status="queued")
    assert queued.count() == 2
    flushed = []
    monkeypatch.setattr(tasks.flush_email, "delay", lambda user_id: flushed.append(user_id))
    created = queued.first().created_at
    soon = created + datetime.timedelta(seconds=notify.EMAIL_WAKE_TTL_SECONDS - 1)
    assert notify.notify_lost(now=soon) == 0 and flushed == []
    later = created + datetime.timedelta(seconds=notify.EMAIL_WAKE_TTL_SECONDS + 1)
    notify.notify_lost(now=later)
    assert sorted(flushed) == sorted(user.pk for user in approvers)
    notify.notify_lost(now=later)
    assert len(flushed) == 2  # their flushes are queued now: not again


def test_a_run_announces_only_its_own_portals_plans_oldest_first(agent, portal, approvers, make_agent, monkeypatch):
    other = Portal.objects.create(slug="other", base_url="https://other.bitrix24.com", auth_mode=AuthMode.WEBHOOK)
    theirs = submit(make_agent("other-agent", portal=other), other)
    first, second = submit(agent, portal), submit(agent, portal)
    told = []
    real = notify.notify_pending
    monkeypatch.setattr(notify, "notify_pending",
                        lambda *, plan_id, flush: told.append(plan_id) or real(plan_id=plan_id, flush=flush))
    assert notify.notify_waiting(portal_id=portal.pk) == 2
    assert told == [first.pk, second.pk]
    assert Plan.objects.get(pk=theirs.pk).approvers_told_at is None


def test_a_run_that_reaches_its_limit_hands_over_to_a_new_one(agent, portal, approvers, queued_runs):
    for _ in range(3):
        submit(agent, portal)
    assert notify.notify_waiting(portal_id=portal.pk, limit=2) == 2
    assert queued_runs == [(portal.pk,)]
    assert notify.notify_waiting(portal_id=portal.pk, limit=2) == 1
    assert queued_runs == [(portal.pk,)]  # the last run found fewer than its limit


def test_a_plan_that_no_longer_waits_is_not_announced(agent, portal, approvers):
    plan = submit(agent, portal)
    plan_decide(plan_id=plan.pk, user=approvers[0], decision="reject")
    assert notify.notify_pending(plan_id=plan.pk) == 0
    assert not Notice.objects.exists()


def test_a_broker_that_refuses_the_run_loses_no_plan(agent, portal, approvers, monkeypatch,
                                                    django_capture_on_commit_callbacks, caplog):
    from apps.approvals import tasks

    def down(*args):
        raise OSError("broker unreachable")

    monkeypatch.setattr(tasks.notify_portal_pending, "delay", down)
    with django_capture_on_commit_callbacks(execute=True):
        plan = submit(agent, portal)  # committed and answered all the same
    assert "could not queue the approvers' notices of portal" in caplog.text
    plan = Plan.objects.get(pk=plan.pk)
    assert plan.status == "pending_approval" and plan.approvers_told_at is None
    # the flag was given back: the next plan tries the broker again
    attempts = []
    monkeypatch.setattr(tasks.notify_portal_pending, "delay", lambda *a: attempts.append(a))
    with django_capture_on_commit_callbacks(execute=True):
        submit(agent, portal)
    assert attempts == [(portal.pk,)]
    # and the beat task announces what waits unannounced for longer than a run may take
    soon = plan.updated_at + datetime.timedelta(seconds=notify.NOTICE_WAKE_TTL_SECONDS - 1)
    assert notify.notify_lost(now=soon) == 0
    later = plan.updated_at + datetime.timedelta(seconds=notify.NOTICE_WAKE_TTL_SECONDS + 1)
    assert notify.notify_lost(now=later) == 2
    assert Notice.objects.filter(plan=plan, kind="pending").count() == 2


def test_a_run_lost_for_longer_than_the_ttl_is_replaced(agent, portal, approvers, queued_runs):
    submit(agent, portal)
    start = timezone.now()
    assert notify.notify_wake(portal_id=portal.pk) is True
    assert notify._WAKE.request(portal.pk, now=start + datetime.timedelta(seconds=1)) is False
    late = start + datetime.timedelta(seconds=notify.NOTICE_WAKE_TTL_SECONDS + 1)
    assert notify._WAKE.request(portal.pk, now=late) is True


def test_each_approver_gets_an_email_with_a_link(agent, portal, approvers, settings):
    settings.SITE_URL = "https://cp.example.com"
    plan = submit(agent, portal, reason="paid")
    assert notify.notify_pending(plan_id=plan.pk) == 2
    for user in approvers:
        assert notify.flush_email(user_id=user.pk) is None
    assert sorted(m.to[0] for m in mail.outbox) == ["alice@example.com", "bob@example.com"]
    message = mail.outbox[0]
    assert f"https://cp.example.com/approvals/plans/{plan.pk}/" in message.body
    assert "Update lead #42: set TITLE to 'paid'" in message.body
    assert "waits for your decision" in message.subject
    assert Notice.objects.filter(status="sent").count() == 2


def test_the_agents_owner_and_those_who_decided_are_not_told(make_agent, portal, approvers):
    alice, bob = approvers
    owned = make_agent("owned", portal=portal, owner=alice)
    plan = submit(owned, portal)
    assert [u.username for u in notify.deciders(plan)] == ["bob"]


def test_one_email_a_minute_then_a_digest(agent, portal, approvers):
    alice = approvers[0]
    first = submit(agent, portal)
    notify.notify_pending(plan_id=first.pk)
    assert notify.flush_email(user_id=alice.pk) is None
    later = [submit(agent, portal) for _ in range(3)]
    for plan in later:
        notify.notify_pending(plan_id=plan.pk)
    wait = notify.flush_email(user_id=alice.pk)
    assert wait is not None and 0 < wait <= 60  # the task retries after the minute
    assert [m.to[0] for m in mail.outbox].count("alice@example.com") == 1
    Mailbox.objects.filter(user=alice).update(last_sent_at=timezone.now() - datetime.timedelta(seconds=61))
    assert notify.flush_email(user_id=alice.pk) is None
    digest = [m for m in mail.outbox if m.to == ["alice@example.com"]][-1]
    assert digest.subject == "3 plans wait for your decision"
    assert all(str(p.pk) in digest.body for p in later)


def test_a_plan_decided_before_the_digest_is_left_out(agent, portal, approvers):
    alice, bob = approvers
    plan = submit(agent, portal)
    notify.notify_pending(plan_id=plan.pk)
    plan_decide(plan_id=plan.pk, user=bob, decision="approve")
    assert notify.flush_email(user_id=alice.pk) is None
    assert not [m for m in mail.outbox if m.to == ["alice@example.com"]]


def test_a_mail_failure_is_recorded_and_the_plan_is_untouched(agent, portal, approvers, monkeypatch):
    plan = submit(agent, portal)
    notify.notify_pending(plan_id=plan.pk)

    def broken(*args, **kwargs):
        raise OSError("SMTP server unreachable")

    monkeypatch.setattr(notify, "send_mail", broken)
    assert notify.flush_email(user_id=approvers[0].pk) is None
    notice = Notice.objects.get(user=approvers[0])
    assert (notice.status, notice.error) == ("failed", "OSError: SMTP server unreachable")
    assert Plan.objects.get(pk=plan.pk).status == "pending_approval"


def test_reminder_at_half_and_escalation_at_80_percent(agent, portal, approvers, django_user_model):
    fallback = django_user_model.objects.create_user("carol", email="carol@example.com", password="x")
    group = Group.objects.create(name="fallback approvers")
    group.user_set.add(fallback)
    PortalEscalation.objects.create(portal=portal, fallback_group=group)
    plan = submit(agent, portal)
    start, end = plan.created_at, plan.expires_at
    assert notify.remind_due(now=start + (end - start) * 0.4) == 0
    assert notify.remind_due(now=start + (end - start) * 0.55) == 2
    assert notify.remind_due(now=start + (end - start) * 0.6) == 0  # once only
    assert notify.remind_due(now=start + (end - start) * 0.85) == 1
    assert Notice.objects.get(kind="escalation").user == fallback


def test_bitrix_notification_through_the_portal_transport(db, agent, make_approver):
    stub = StubServer().start()
    try:
        portal = Portal.objects.create(slug="stubhook", base_url=f"{stub.url}/p", auth_mode=AuthMode.WEBHOOK)
        Credential.objects.create(portal=portal, webhook_user_id="1", webhook_code="s3cr3twebhookcode")
        from apps.policy.services import grant_upsert

        grant_upsert(agent=agent, portal=portal, pack="core")
        alice = make_approver("alice", portals=[portal])
        ApproverBitrixUser.objects.create(user=alice, portal=portal, bitrix_user_id=17)
        plan = submit(agent, portal)
        notify.notify_pending(plan_id=plan.pk)
        notice = Notice.objects.get(user=alice, channel="bitrix")
        assert notify.send_bitrix(notice_id=notice.pk) is None
        sent = [r for r in stub.requests if r.path.endswith("/im.notify.system.add")
                or r.path.endswith("/im.notify.system.add.json")]
        assert len(sent) == 1
        assert sent[0].json["USER_ID"] == 17 and str(plan.pk) in sent[0].json["MESSAGE"]
        notice.refresh_from_db()
        assert notice.status == "sent"

        stub.respond = lambda seen: (400, {"error": "ERROR_CORE", "error_description": "user not found"}, {})
        other = Notice.objects.create(user=alice, plan=plan, kind="reminder", channel="bitrix")
        assert notify.send_bitrix(notice_id=other.pk) is None
        other.refresh_from_db()
        assert (other.status, other.error) == ("failed", "user not found")
        assert Plan.objects.get(pk=plan.pk).status == "pending_approval"
    finally:
        stub.stop()
