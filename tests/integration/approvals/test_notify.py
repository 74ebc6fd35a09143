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
    """The portal ids whose notice run was queued (the task's `apply_async`, replaced)."""
    from apps.approvals import tasks

    queued = []
    monkeypatch.setattr(tasks.notify_portal_pending, "apply_async", lambda args, **kw: queued.append(tuple(args)))
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


def test_a_run_announces_only_its_own_portals_plans_oldest_first(agent, portal, approvers, make_agent):
    other = Portal.objects.create(slug="other", base_url="https://other.bitrix24.com", auth_mode=AuthMode.WEBHOOK)
    theirs = submit(make_agent("other-agent", portal=other), other)
    first, second, third = submit(agent, portal), submit(agent, portal), submit(agent, portal)
    assert notify.notify_waiting(portal_id=portal.pk, limit=2) == 2
    told = Plan.objects.exclude(approvers_told_at=None).values_list("pk", flat=True)
    assert sorted(told) == sorted([first.pk, second.pk])
    alice = approvers[0]
    assert list(Notice.objects.filter(user=alice).order_by("pk").values_list("plan_id", flat=True)) == [
        first.pk, second.pk]
    assert notify.notify_waiting(portal_id=portal.pk) == 1
    assert Plan.objects.get(pk=third.pk).approvers_told_at is not None
    assert Plan.objects.get(pk=theirs.pk).approvers_told_at is None


def test_a_run_announces_a_batch_of_plans_in_one_go(agent, portal, approvers, queued_flushes,
                                                    django_assert_max_num_queries):
    """A plan a transaction made a notice run cost a dozen statements and a commit per plan; at 100
    waiting plans a second the runs filled the worker, in front of the executions."""
    plans = [submit(agent, portal) for _ in range(notify.NOTICE_BATCH + 10)]
    with django_assert_max_num_queries(45):  # 40: two batches of 16, the last read, the flag, two flushes
        assert notify.notify_waiting(portal_id=portal.pk) == len(plans)
    assert Notice.objects.filter(kind="pending", status="queued").count() == 2 * len(plans)
    assert not Plan.objects.filter(approvers_told_at=None).exists()
    assert sorted(queued_flushes) == sorted(u.pk for u in approvers)


def test_a_notice_made_meanwhile_by_another_writer_is_not_made_again(agent, portal, approvers):
    """The one insert fails on a notice that exists (two reminder passes overlapping, say): the
    notices are then made one at a time, and the one that exists is skipped."""
    alice, bob = approvers
    plan = submit(agent, portal)
    made = notify._queue([(plan, [alice, bob], 0), (plan, [alice], 0)], "reminder")
    assert sorted(n.user_id for n in made) == sorted([alice.pk, bob.pk])
    assert all(n.pk for n in made)
    assert Notice.objects.filter(plan=plan, kind="reminder").count() == 2


def test_plans_committed_while_a_run_announces_queue_no_run_and_are_announced_by_it(
        agent, portal, approvers, queued_runs, monkeypatch, django_capture_on_commit_callbacks):
    """Clearing the flag at a run's start made every plan committed during the run queue a run
    of its own: at 100 plans a second, a run every two plans, each a flag write and a task."""
    with django_capture_on_commit_callbacks(execute=True):
        first = submit(agent, portal)
    assert queued_runs == [(portal.pk,)]
    during = []
    announce = notify._announce

    def announce_and_submit(waiting, *, limit):
        if not during:
            with django_capture_on_commit_callbacks(execute=True):
                during.append(submit(agent, portal))
        return announce(waiting, limit=limit)

    monkeypatch.setattr(notify, "_announce", announce_and_submit)
    assert notify.notify_waiting(portal_id=portal.pk) == 2
    assert queued_runs == [(portal.pk,)]  # the plan made during the run queued nothing
    assert Plan.objects.filter(pk__in=[first.pk, during[0].pk], approvers_told_at=None).count() == 0
    with django_capture_on_commit_callbacks(execute=True):
        submit(agent, portal)
    assert queued_runs == [(portal.pk,), (portal.pk,)]  # the run ended with its flag clear


def test_a_run_waits_a_second_for_more_plans_and_a_hand_over_starts_at_once(agent, portal, approvers,
                                                                            monkeypatch):
    """At 100 plans a second, runs queued at once announced a few plans each, and paid a run's
    fixed costs (the approvers and their permissions, the flag, the task) every few plans."""
    from apps.approvals import tasks

    countdowns = []
    monkeypatch.setattr(tasks.notify_portal_pending, "apply_async",
                        lambda args, countdown=None: countdowns.append(countdown))
    for _ in range(3):
        submit(agent, portal)
    assert notify.notify_wake(portal_id=portal.pk) is True
    assert countdowns == [notify.NOTICE_RUN_DELAY_SECONDS] and 0 < notify.NOTICE_RUN_DELAY_SECONDS <= 2
    assert notify.notify_waiting(portal_id=portal.pk, limit=2) == 2
    assert countdowns == [notify.NOTICE_RUN_DELAY_SECONDS, None]  # the plans left wait already


def test_a_run_that_reaches_its_limit_hands_over_to_a_new_one(agent, portal, approvers, queued_runs):
    for _ in range(3):
        submit(agent, portal)
    assert notify.notify_waiting(portal_id=portal.pk, limit=2) == 2
    assert queued_runs == [(portal.pk,)]
    assert notify._WAKE.request(portal.pk) is False  # handed over with the flag set: plans meanwhile queue nothing
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

    def down(*args, **kwargs):
        raise OSError("broker unreachable")

    monkeypatch.setattr(tasks.notify_portal_pending, "apply_async", down)
    with django_capture_on_commit_callbacks(execute=True):
        plan = submit(agent, portal)  # committed and answered all the same
    assert "could not queue the approvers' notices of portal" in caplog.text
    plan = Plan.objects.get(pk=plan.pk)
    assert plan.status == "pending_approval" and plan.approvers_told_at is None
    # the flag was given back: the next plan tries the broker again
    attempts = []
    monkeypatch.setattr(tasks.notify_portal_pending, "apply_async", lambda args, **kw: attempts.append(tuple(args)))
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


def test_a_long_digest_lists_its_first_plans_and_counts_the_rest(agent, portal, approvers):
    alice = approvers[0]
    plans = [submit(agent, portal) for _ in range(notify.DIGEST_LINES + 5)]
    assert notify.notify_waiting(portal_id=portal.pk) == len(plans)
    assert notify.flush_email(user_id=alice.pk) is None
    digest = [m for m in mail.outbox if m.to == ["alice@example.com"]][-1]
    assert digest.subject == f"{len(plans)} plans wait for your decision"
    assert all(str(p.pk) in digest.body for p in plans[:notify.DIGEST_LINES])
    assert not any(str(p.pk) in digest.body for p in plans[notify.DIGEST_LINES:])
    assert "... and 5 more." in digest.body and "/approvals/" in digest.body
    assert Notice.objects.filter(user=alice, status="sent").count() == len(plans)


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


def test_reminders_of_many_plans_take_a_few_statements_a_batch(agent, portal, approvers,
                                                               django_assert_max_num_queries):
    plans = [submit(agent, portal) for _ in range(notify.NOTICE_BATCH + 10)]
    start, end = plans[-1].created_at, plans[-1].expires_at
    with django_assert_max_num_queries(40):  # 33: the read, two batches of 14, two flushes
        assert notify.remind_due(now=start + (end - start) * 0.55) == 2 * len(plans)
    assert notify.remind_due(now=start + (end - start) * 0.6) == 0  # once only


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
