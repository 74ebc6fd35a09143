"""Telling approvers: at once when a plan waits, a reminder at half its lifetime, an escalation to
the portal's fallback approvers at 80 %.

Email goes through Django's mail backend (`EMAIL_URL`; the console in the embedded default), at
most one message per person per minute: notices that arrive meanwhile wait as `queued` and go
out together as one digest. Where an approver has a Bitrix24 user id on the plan's portal they
also get `im.notify.system.add` there, sent through the transport and limiter with the portal's
own credential; it is the plane speaking, so no agent's grants are involved. A failed notice is
recorded (visible in the admin) and never touches the plan.
"""

from __future__ import annotations

import datetime
import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from apps.bitrix.client import BitrixClient
from apps.bitrix.errors import BitrixError, NotSent
from apps.bitrix.redact import redact
from apps.core.wake import WakeFlag
from apps.plans.choices import PlanStatus
from apps.plans.models import Approval, Plan

from . import describe
from .models import (
    ApproverBitrixUser,
    EmailWake,
    Mailbox,
    Notice,
    NoticeChannel,
    NoticeKind,
    NoticeStatus,
    NoticeWake,
    PortalEscalation,
)

logger = logging.getLogger(__name__)
EMAIL_INTERVAL = datetime.timedelta(seconds=60)
#: A queued notice run not started after this long is taken for lost: the next plan queues another.
NOTICE_WAKE_TTL_SECONDS = 60
#: Plans one notice run announces before it hands over to a new run.
NOTICE_RUN_LIMIT = 200
_WAKE = WakeFlag(NoticeWake, ttl_seconds=NOTICE_WAKE_TTL_SECONDS)
#: A person's flush queued (or waiting out the minute between emails) longer than this is taken for lost.
EMAIL_WAKE_TTL_SECONDS = 2 * int(EMAIL_INTERVAL.total_seconds())
_EMAIL_WAKE = WakeFlag(EmailWake, ttl_seconds=EMAIL_WAKE_TTL_SECONDS)
REMINDER_AT, ESCALATION_AT = 0.5, 0.8


def plan_link(plan_id) -> str:
    return settings.SITE_URL.rstrip("/") + reverse("approvals:plan", args=[plan_id])


def deciders(plan: Plan) -> list:
    """The portal's approvers who may decide this plan now."""
    User = get_user_model()
    decided = set(plan.approvals.values_list("user_id", flat=True))
    users = User.objects.filter(approvable_portals=plan.portal, is_active=True).exclude(pk__in=decided)
    if plan.agent.owner_id:
        users = users.exclude(pk=plan.agent.owner_id)
    return [u for u in users if u.has_perm("plans.approve_plan")]


def fallback_approvers(plan: Plan) -> list:
    escalation = PortalEscalation.objects.filter(portal=plan.portal).select_related("fallback_group").first()
    if escalation is None:
        return []
    users = escalation.fallback_group.user_set.filter(is_active=True)
    if plan.agent.owner_id:
        users = users.exclude(pk=plan.agent.owner_id)
    return list(users)


def _round(plan: Plan) -> int:
    """How many times the plan went back to its approvers: each time dismissed its approvals at once."""
    return (Approval.history.filter(plan=plan, dismissed_at__isnull=False).values("dismissed_at")
            .distinct().count())


def _queue(users, plan: Plan, kind: str, sent_back: int = 0) -> list[Notice]:
    """One notice per person, channel and round; a notice that exists already is not made again."""
    bitrix_ids = dict(ApproverBitrixUser.objects.filter(portal=plan.portal, user__in=users).values_list(
        "user_id", "bitrix_user_id"))
    made = []
    for user in users:
        channels = [NoticeChannel.EMAIL] if user.email else []
        if user.pk in bitrix_ids:
            channels.append(NoticeChannel.BITRIX)
        for channel in channels:
            try:
                with transaction.atomic():
                    made.append(Notice.objects.create(user=user, plan=plan, kind=kind, channel=channel,
                                                      round=sent_back))
            except IntegrityError:
                continue
    return made


def _dispatch(notices: list[Notice], *, flush: set | None = None) -> None:
    """Queue the sending of these notices once the transaction commits: each person's emails go
    out together (`flush_email`), Bitrix24 notifications one by one. `flush`: a set that collects
    the people whose email is due, when the caller flushes them once for many plans."""
    from .tasks import send_bitrix_notice

    emails = {n.user_id for n in notices if n.channel == NoticeChannel.EMAIL}
    if flush is not None:
        flush.update(emails)
    elif emails:
        transaction.on_commit(lambda: _flush_emails(emails))
    for notice in notices:
        if notice.channel == NoticeChannel.BITRIX:
            send_bitrix_notice.delay_on_commit(notice.pk)


def _announce(plan_ids) -> list:
    """Announce each plan (`notify_pending`), then flush each approver's email once for all of
    them, not once per plan. Returns the ids."""
    ids, flush = list(plan_ids), set()
    for plan_id in ids:
        notify_pending(plan_id=plan_id, flush=flush)
    _flush_emails(flush)
    return ids


def _flush_emails(user_ids: set) -> None:
    """Queue each person's email flush unless one is queued already (or waits out their minute):
    however many runs tell a person of plans meanwhile, one flush sends them all. A broker that
    refuses the task loses nothing: the notices stay queued and `notify_lost` flushes them."""
    from .tasks import flush_email

    for user_id in sorted(user_ids):
        if not _EMAIL_WAKE.request(user_id):
            continue
        try:
            flush_email.delay(user_id)
        except Exception:  # noqa: BLE001 - the notices are committed; the beat task flushes them
            logger.warning("could not queue the email flush of user %s; the beat task will", user_id, exc_info=True)
            _EMAIL_WAKE.clear(user_id)


def notify_pending(*, plan_id, flush: set | None = None) -> int:
    """A plan waits: tell every approver who may decide it, once (the plan is marked told).
    `flush`: see `_dispatch`."""
    with transaction.atomic():
        plan = (Plan.objects.select_for_update(of=("self",)).select_related("portal", "agent")
                .filter(pk=plan_id).first())
        if plan is None or plan.status != PlanStatus.PENDING_APPROVAL or plan.approvers_told_at is not None:
            return 0
        notices = _queue(deciders(plan), plan, NoticeKind.PENDING, _round(plan))
        Plan.objects.filter(pk=plan.pk).update(approvers_told_at=timezone.now())
        _dispatch(notices, flush=flush)
    return len(notices)


def notify_waiting(*, portal_id: int, limit: int = NOTICE_RUN_LIMIT) -> int:
    """One notice run for a portal: the approvers of every plan that waits and was not announced
    yet, oldest first. Clears the wake flag before it reads (`apps.core.wake`). Returns the number
    of plans announced; a run that reaches `limit` hands over to a new one. Each approver's email
    is flushed once for the run, so a burst of plans does not leave a retrying task per plan and
    person in the worker (each would wake again when the minute between emails is over)."""
    _WAKE.clear(portal_id)
    waiting = (Plan.objects.filter(portal_id=portal_id, status=PlanStatus.PENDING_APPROVAL, approvers_told_at=None)
               .order_by("created_at").values_list("pk", flat=True))
    ids = _announce(waiting[:limit])
    if len(ids) == limit:
        notify_wake(portal_id=portal_id)
    return len(ids)


def notify_wake(*, portal_id: int) -> bool:
    """After a waiting plan is committed: queue the portal's notice run unless one is queued and has
    not started. True when a run was queued. A broker that cannot take the task loses nothing:
    the plan stays unannounced and `remind_due` (a beat task) picks it up."""
    if not _WAKE.request(portal_id):
        return False
    from .tasks import notify_portal_pending

    try:
        notify_portal_pending.delay(portal_id)
    except Exception:  # noqa: BLE001 - the plan is committed; the beat task announces it
        logger.warning("could not queue the approvers' notices of portal %s; the beat task will", portal_id,
                       exc_info=True)
        _WAKE.clear(portal_id)
        return False
    return True


def notify_schedule(plan: Plan) -> None:
    """In the transaction that made the plan wait (with `approvers_told_at` empty): once it commits,
    wake its portal's notice run. A busy portal's plans share runs instead of a task each."""
    portal_id = plan.portal_id
    transaction.on_commit(lambda: notify_wake(portal_id=portal_id))


def notify_lost(*, now=None) -> int:
    """Plans still unannounced a while after they began to wait (their run was lost, or the broker
    refused it): announce them now (a beat task); and emails queued longer than a flush may take
    (it was lost): flush them. Returns the number of plans announced."""
    now = now or timezone.now()
    lost = (Plan.objects.filter(status=PlanStatus.PENDING_APPROVAL, approvers_told_at=None,
                                updated_at__lt=now - datetime.timedelta(seconds=NOTICE_WAKE_TTL_SECONDS))
            .order_by("created_at").values_list("pk", flat=True))
    announced = _announce(lost[:NOTICE_RUN_LIMIT])
    unsent = (Notice.objects.filter(status=NoticeStatus.QUEUED, channel=NoticeChannel.EMAIL,
                                    created_at__lt=now - datetime.timedelta(seconds=EMAIL_WAKE_TTL_SECONDS))
              .values_list("user_id", flat=True).distinct())
    _flush_emails(set(unsent))
    return len(announced)


def remind_due(*, now=None) -> int:
    """Reminders at half a waiting plan's lifetime, escalations at 80 % (a beat task)."""
    now = now or timezone.now()
    count, flush = 0, set()
    waiting = Plan.objects.filter(status=PlanStatus.PENDING_APPROVAL, expires_at__gt=now).select_related(
        "portal", "agent")
    for plan in waiting:
        lifetime = (plan.expires_at - plan.created_at).total_seconds()
        if lifetime <= 0:
            continue
        elapsed = (now - plan.created_at).total_seconds() / lifetime
        with transaction.atomic():
            notices = []
            if elapsed >= REMINDER_AT:  # ESCALATION_AT comes later
                sent_back = _round(plan)
                notices += _queue(deciders(plan), plan, NoticeKind.REMINDER, sent_back)
                if elapsed >= ESCALATION_AT:
                    notices += _queue(fallback_approvers(plan), plan, NoticeKind.ESCALATION, sent_back)
            _dispatch(notices, flush=flush)
        count += len(notices)
    _flush_emails(flush)
    return count


SUBJECTS = {
    NoticeKind.PENDING: "waits for your decision",
    NoticeKind.REMINDER: "still waits for a decision (half its time is gone)",
    NoticeKind.ESCALATION: "is about to expire undecided",
}


AGAIN = "waits for your decision again: a record changed after it was approved"


def _about(notice: Notice) -> str:
    return AGAIN if notice.kind == NoticeKind.PENDING and notice.round else SUBJECTS[notice.kind]


def _line(notice: Notice) -> str:
    plan = notice.plan
    return (f"- [{describe.RISK_WORDS.get(plan.risk, plan.risk)}] {describe.summary(plan.steps)}\n"
            f"  agent {plan.agent.slug} on {plan.portal.slug}, {_about(notice)}"
            f"{', expires ' + plan.expires_at.strftime('%Y-%m-%d %H:%M %Z') if plan.expires_at else ''}\n"
            f"  {plan_link(plan.pk)}")


def _minute_left(user_id, last_sent, now) -> float | None:
    """The seconds until the person may get another email, with their flush's flag kept set (it
    retries then); None when the minute is over."""
    if last_sent and now - last_sent < EMAIL_INTERVAL:
        _EMAIL_WAKE.arm(user_id, now=now)
        return (last_sent + EMAIL_INTERVAL - now).total_seconds()
    return None


def flush_email(*, user_id) -> float | None:
    """Send this person's queued email notices as one message, at most once a minute. Returns
    the seconds to wait when the minute is not over yet: the task retries then, and stays the
    person's one flush meanwhile (its wake flag kept set)."""
    now = timezone.now()
    last_sent = Mailbox.objects.filter(user_id=user_id).values_list("last_sent_at", flat=True).first()
    if (wait := _minute_left(user_id, last_sent, now)) is not None:
        return wait
    _EMAIL_WAKE.clear(user_id)  # before the read: a notice committed from now on queues a new flush
    with transaction.atomic():
        mailbox, _ = Mailbox.objects.select_for_update().get_or_create(user_id=user_id)
        if (wait := _minute_left(user_id, mailbox.last_sent_at, now)) is not None:  # another flush just sent
            return wait
        queued = list(Notice.objects.select_related("user", "plan__portal", "plan__agent").filter(
            user_id=user_id, channel=NoticeChannel.EMAIL, status=NoticeStatus.QUEUED).order_by("created_at"))
        live = [n for n in queued if n.kind == NoticeKind.ESCALATION or n.plan.status == PlanStatus.PENDING_APPROVAL]
        stale = [n.pk for n in queued if n not in live]
        if stale:  # decided or gone meanwhile: nothing to tell
            Notice.objects.filter(pk__in=stale).update(status=NoticeStatus.SENT, error="decided before sending",
                                                       sent_at=now)
        if not live:
            return None
        user = live[0].user
        if len(live) == 1:
            subject = f"Plan {str(live[0].plan_id)[:8]} on {live[0].plan.portal.slug} {_about(live[0])}"
        else:
            subject = f"{len(live)} plans wait for your decision"
        body = "\n\n".join(_line(n) for n in live) + f"\n\nYour inbox: {settings.SITE_URL.rstrip('/')}/approvals/\n"
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [user.email])
        except Exception as exc:  # noqa: BLE001 - a failed notice never blocks a plan
            Notice.objects.filter(pk__in=[n.pk for n in live]).update(
                status=NoticeStatus.FAILED, error=redact(f"{type(exc).__name__}: {exc}")[:500])
            return None
        Notice.objects.filter(pk__in=[n.pk for n in live]).update(status=NoticeStatus.SENT, sent_at=now)
        mailbox.last_sent_at = now
        mailbox.save(update_fields=["last_sent_at"])
    return None


def send_bitrix(*, notice_id) -> float | None:
    """`im.notify.system.add` to the approver's Bitrix24 user on the plan's portal. Returns the
    seconds to wait when the portal's limiter defers it."""
    notice = Notice.objects.select_related("plan__portal", "plan__agent", "user").filter(pk=notice_id).first()
    if notice is None or notice.status != NoticeStatus.QUEUED:
        return None
    target = ApproverBitrixUser.objects.filter(user=notice.user, portal=notice.plan.portal).first()
    if target is None:
        Notice.objects.filter(pk=notice.pk).update(status=NoticeStatus.FAILED, error="no Bitrix24 user id any more")
        return None
    plan = notice.plan
    message = (f"Plan {describe.summary(plan.steps)} by agent {plan.agent.slug} {_about(notice)}: "
               f"[URL={plan_link(plan.pk)}]open it[/URL]")
    try:
        BitrixClient(plan.portal).call("im.notify.system.add", {"USER_ID": target.bitrix_user_id, "MESSAGE": message})
    except NotSent as exc:
        return max(1.0, exc.retry_after or 5.0)
    except BitrixError as exc:
        Notice.objects.filter(pk=notice.pk).update(status=NoticeStatus.FAILED,
                                                   error=redact(exc.description or exc.code)[:500])
        return None
    Notice.objects.filter(pk=notice.pk).update(status=NoticeStatus.SENT, sent_at=timezone.now())
    return None
