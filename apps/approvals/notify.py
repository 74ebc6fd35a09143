"""Telling approvers: at once when a plan waits, a reminder at half its lifetime, an escalation to
the portal's fallback approvers at 80 %.

Email goes through Django's mail backend (`EMAIL_URL`; the console in the embedded default), at
most one message per person per minute: notices that arrive meanwhile wait as `queued` and go
out together as one digest. Where an approver has a Bitrix24 user id on the plan's portal they
also get `im.notify.system.add` there, sent through the transport and limiter with the portal's
own credential; it is the plane speaking, so no agent's grants are involved. A portal's
Bitrix24 notices go out as a digest too (`flush_bitrix`): one message per person for what
queued meanwhile, up to 50 people in one `batch` request (one slot of the portal's limiter), so
a burst of plans does not leave a retrying task per notice behind a 2 requests/s portal. A
failed notice is recorded (visible in the admin) and never touches the plan.
"""

from __future__ import annotations

import datetime
import logging
from collections import Counter, defaultdict

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from apps.bitrix.client import MAX_BATCH, BitrixClient
from apps.bitrix.errors import BitrixError, NotSent, classify_error
from apps.bitrix.redact import redact
from apps.core.wake import WakeFlag
from apps.plans.choices import PlanStatus
from apps.plans.models import Approval, Plan
from apps.portals.models import Portal

from . import describe
from .models import (
    ApproverBitrixUser,
    BitrixWake,
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
#: A notice run starts this long after the plan that woke it: a busy portal's plans of that
#: second share one run. Approvers are told within about a second, email at most once a minute.
NOTICE_RUN_DELAY_SECONDS = 1.0
#: Plans announced in one transaction (their rows stay locked until it commits).
NOTICE_BATCH = 50
_WAKE = WakeFlag(NoticeWake, ttl_seconds=NOTICE_WAKE_TTL_SECONDS)
#: A person's flush queued (or waiting out the minute between emails) longer than this is taken for lost.
EMAIL_WAKE_TTL_SECONDS = 2 * int(EMAIL_INTERVAL.total_seconds())
_EMAIL_WAKE = WakeFlag(EmailWake, ttl_seconds=EMAIL_WAKE_TTL_SECONDS)
REMINDER_AT, ESCALATION_AT = 0.5, 0.8
#: Plans one digest email lists; the rest are counted, with the link to the inbox.
DIGEST_LINES = 50
#: Plans one Bitrix24 digest message lists (a chat notification, kept short); the rest are counted.
BITRIX_DIGEST_LINES = 10
#: Notices one Bitrix24 digest run takes before it hands over to a new run.
BITRIX_RUN_LIMIT = 1000
#: A portal's digest queued (or waiting for the portal's limiter) longer than this is taken for
#: lost; a notice left `sending` twice as long (its worker died mid-send) is queued again.
BITRIX_WAKE_TTL_SECONDS = 120
_BITRIX_WAKE = WakeFlag(BitrixWake, ttl_seconds=BITRIX_WAKE_TTL_SECONDS)


def plan_link(plan_id) -> str:
    return settings.SITE_URL.rstrip("/") + reverse("approvals:plan", args=[plan_id])


def deciders(plan: Plan) -> list:
    """The portal's approvers who may decide this plan now."""
    return _deciders_of([plan])[plan.pk]


def _deciders_of(plans: list[Plan]) -> dict:
    """`deciders` of many plans at once: plan pk -> its portal's active approvers who hold the
    permission, less the agent's owner and those who decided it already."""
    User = get_user_model()
    decided = defaultdict(set)
    for plan_id, user_id in Approval.objects.filter(plan__in=plans).values_list("plan_id", "user_id"):
        decided[plan_id].add(user_id)
    approvers = {}
    for portal_id in {plan.portal_id for plan in plans}:
        users = User.objects.filter(approvable_portals=portal_id, is_active=True).order_by("pk")
        approvers[portal_id] = [u for u in users if u.has_perm("plans.approve_plan")]
    return {plan.pk: [u for u in approvers[plan.portal_id]
                      if u.pk not in decided[plan.pk] and u.pk != plan.agent.owner_id] for plan in plans}


def _fallback_of(plans: list[Plan]) -> dict:
    """plan pk -> its portal's fallback approvers (the escalation group's active members), less the
    agent's owner; one read per portal."""
    groups = {}
    for portal_id in {plan.portal_id for plan in plans}:
        escalation = PortalEscalation.objects.filter(portal_id=portal_id).select_related("fallback_group").first()
        groups[portal_id] = [] if escalation is None else list(
            escalation.fallback_group.user_set.filter(is_active=True).order_by("pk"))
    return {plan.pk: [u for u in groups[plan.portal_id] if u.pk != plan.agent.owner_id] for plan in plans}


def _rounds(plans: list[Plan]) -> Counter:
    """How many times each plan went back to its approvers: each time dismissed its approvals at
    once. plan pk -> count (0 for a plan never sent back)."""
    dismissals = (Approval.history.filter(plan__in=plans, dismissed_at__isnull=False)
                  .values_list("plan_id", "dismissed_at").order_by().distinct())
    return Counter(plan_id for plan_id, _ in dismissals)


def _queue(wanted: list[tuple[Plan, list, int]], kind: str) -> list[Notice]:
    """For each (plan, people, round): one notice per person, channel and round. A notice that exists
    already is not made again. One insert for them all; should another writer make one of them
    meanwhile (two reminder passes overlapping), one at a time, skipping what exists."""
    if not wanted:
        return []
    plans = [plan for plan, _users, _round in wanted]
    user_ids = {user.pk for _plan, users, _round in wanted for user in users}
    in_bitrix = set(ApproverBitrixUser.objects.filter(
        portal_id__in={plan.portal_id for plan in plans}, user_id__in=user_ids).values_list("portal_id", "user_id"))
    exist = set(Notice.objects.filter(plan__in=plans, kind=kind).values_list("user_id", "plan_id", "channel", "round"))
    new = []
    for plan, users, sent_back in wanted:
        for user in users:
            channels = [NoticeChannel.EMAIL] if user.email else []
            if (plan.portal_id, user.pk) in in_bitrix:
                channels.append(NoticeChannel.BITRIX)
            new += [Notice(user=user, plan=plan, kind=kind, channel=channel, round=sent_back)
                    for channel in channels if (user.pk, plan.pk, channel, sent_back) not in exist]
    try:
        with transaction.atomic():
            return Notice.objects.bulk_create(new)
    except IntegrityError:
        pass
    made = []
    for notice in new:
        try:
            with transaction.atomic():
                notice.save(force_insert=True)
        except IntegrityError:
            continue
        made.append(notice)
    return made


def _dispatch(notices: list[Notice], *, flush: set | None = None) -> None:
    """Queue the sending of these notices once the transaction commits: each person's emails go
    out together (`flush_email`), each portal's Bitrix24 notifications too (`flush_bitrix`).
    `flush`: a set that collects the people whose email is due, when the caller flushes them once
    for many plans."""
    emails = {n.user_id for n in notices if n.channel == NoticeChannel.EMAIL}
    if flush is not None:
        flush.update(emails)
    elif emails:
        transaction.on_commit(lambda: _flush_emails(emails))
    portals = {n.plan.portal_id for n in notices if n.channel == NoticeChannel.BITRIX}
    if portals:
        transaction.on_commit(lambda: _flush_bitrix(portals))


def _announce_batch(waiting, *, size: int, flush: set, skip_locked: bool = True) -> tuple[int, int]:
    """Announce up to `size` of the plans in `waiting` (a queryset) that wait unannounced, oldest
    first, in one transaction: their rows locked, their notices made with one insert, their
    approvers' email collected in `flush`. A plan another transaction holds (a run beside this
    one, a decision) is skipped, not waited for: two runs share the plans instead of taking turns
    on each. Returns how many plans were announced and how many notices made."""
    with transaction.atomic():
        plans = list(waiting.select_for_update(of=("self",), skip_locked=skip_locked)
                     .select_related("portal", "agent")
                     .filter(status=PlanStatus.PENDING_APPROVAL, approvers_told_at=None)
                     .order_by("created_at")[:size])
        if not plans:
            return 0, 0
        told, rounds = _deciders_of(plans), _rounds(plans)
        notices = _queue([(plan, told[plan.pk], rounds[plan.pk]) for plan in plans], NoticeKind.PENDING)
        Plan.objects.filter(pk__in=[plan.pk for plan in plans]).update(approvers_told_at=timezone.now())
        _dispatch(notices, flush=flush)
    return len(plans), len(notices)


def _announce(waiting, *, limit: int) -> int:
    """Announce what waits unannounced in `waiting`, `NOTICE_BATCH` plans a transaction, up to
    `limit` plans; then flush each approver's email once for all of them, not once per plan.
    Returns how many were announced."""
    flush, total = set(), 0
    while total < limit:
        size = min(NOTICE_BATCH, limit - total)
        told, _made = _announce_batch(waiting, size=size, flush=flush)
        total += told
        if told < size:  # none left, or the rest held by another transaction: a later run announces them
            break
    _flush_emails(flush)
    return total


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


def _flush_bitrix(portal_ids: set, *, now=None) -> None:
    """Queue each portal's Bitrix24 digest unless one is queued already (or waits for the portal's
    limiter). A broker that refuses the task loses nothing: `notify_lost` flushes them."""
    from .tasks import flush_bitrix_notices

    for portal_id in sorted(portal_ids):
        if not _BITRIX_WAKE.request(portal_id, now=now):
            continue
        try:
            flush_bitrix_notices.delay(portal_id)
        except Exception:  # noqa: BLE001 - the notices are committed; the beat task flushes them
            logger.warning("could not queue the Bitrix24 notices of portal %s; the beat task will", portal_id,
                           exc_info=True)
            _BITRIX_WAKE.clear(portal_id)


def notify_pending(*, plan_id, flush: set | None = None) -> int:
    """A plan waits: tell every approver who may decide it, once (the plan is marked told).
    `flush`: see `_dispatch`. Returns the number of notices made."""
    collect = set() if flush is None else flush
    _told, made = _announce_batch(Plan.objects.filter(pk=plan_id), size=1, flush=collect, skip_locked=False)
    if flush is None and collect:
        transaction.on_commit(lambda: _flush_emails(collect))  # at once, unless a caller's transaction is open
    return made


def notify_waiting(*, portal_id: int, limit: int = NOTICE_RUN_LIMIT) -> int:
    """One notice run for a portal: the approvers of every plan that waits and was not announced
    yet, oldest first. Returns the number of plans announced. Each approver's email is flushed
    once for the run, so a burst of plans does not leave a retrying task per plan and person in
    the worker (each would wake again when the minute between emails is over).

    The wake flag (`apps.core.wake`) stays set while the run announces, so the plans committed
    meanwhile queue no run of their own (a busy portal's submits then only read the flag); it is
    cleared before the run's last read, which finds them. A run that reaches `limit` hands over
    to a new one, the flag kept set."""
    waiting = Plan.objects.filter(portal_id=portal_id)
    count = _announce(waiting, limit=limit)
    if count < limit:
        _WAKE.clear(portal_id)
        count += _announce(waiting, limit=limit - count)
    if count == limit:
        _WAKE.arm(portal_id)
        _queue_run(portal_id)
    return count


def notify_wake(*, portal_id: int) -> bool:
    """After a waiting plan is committed: queue the portal's notice run unless one is queued or
    running and has not yet made its last read. True when a run was queued."""
    return _WAKE.request(portal_id) and _queue_run(portal_id, countdown=NOTICE_RUN_DELAY_SECONDS)


def _queue_run(portal_id: int, *, countdown: float = 0) -> bool:
    """Queue the portal's notice run (its flag set), `countdown` seconds from now. A broker that
    cannot take the task loses nothing: the plans stay unannounced and `notify_lost` (a beat
    task) announces them."""
    from .tasks import notify_portal_pending

    try:
        notify_portal_pending.apply_async((portal_id,), countdown=countdown or None)
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
    lost = Plan.objects.filter(updated_at__lt=now - datetime.timedelta(seconds=NOTICE_WAKE_TTL_SECONDS))
    announced = _announce(lost, limit=NOTICE_RUN_LIMIT)
    unsent = (Notice.objects.filter(status=NoticeStatus.QUEUED, channel=NoticeChannel.EMAIL,
                                    created_at__lt=now - datetime.timedelta(seconds=EMAIL_WAKE_TTL_SECONDS))
              .values_list("user_id", flat=True).distinct())
    _flush_emails(set(unsent))
    queued_since = now - datetime.timedelta(seconds=BITRIX_WAKE_TTL_SECONDS)
    Notice.objects.filter(channel=NoticeChannel.BITRIX, status=NoticeStatus.SENDING,
                          sent_at__lt=now - 2 * datetime.timedelta(seconds=BITRIX_WAKE_TTL_SECONDS)).update(
        status=NoticeStatus.QUEUED, sent_at=None)  # its digest's worker died mid-send: at least once
    _flush_bitrix(set(Notice.objects.filter(status=NoticeStatus.QUEUED, channel=NoticeChannel.BITRIX,
                                            created_at__lt=queued_since)
                      .values_list("plan__portal_id", flat=True).distinct()), now=now)
    return announced


def remind_due(*, now=None) -> int:
    """Reminders at half a waiting plan's lifetime, escalations at 80 % (a beat task), made for
    `NOTICE_BATCH` plans at a time."""
    now = now or timezone.now()
    count, flush = 0, set()
    waiting = (Plan.objects.filter(status=PlanStatus.PENDING_APPROVAL, expires_at__gt=now)
               .select_related("portal", "agent").order_by("created_at"))
    due = []  # (plan, the share of its lifetime gone)
    for plan in waiting.iterator(chunk_size=NOTICE_BATCH):
        lifetime = (plan.expires_at - plan.created_at).total_seconds()
        if lifetime > 0 and (gone := (now - plan.created_at).total_seconds() / lifetime) >= REMINDER_AT:
            due.append((plan, gone))  # ESCALATION_AT comes later
    for start in range(0, len(due), NOTICE_BATCH):
        plans = [plan for plan, _gone in due[start:start + NOTICE_BATCH]]
        late = [plan for plan, gone in due[start:start + NOTICE_BATCH] if gone >= ESCALATION_AT]
        told, rounds, fallback = _deciders_of(plans), _rounds(plans), _fallback_of(late)
        with transaction.atomic():
            notices = _queue([(plan, told[plan.pk], rounds[plan.pk]) for plan in plans], NoticeKind.REMINDER)
            notices += _queue([(plan, fallback[plan.pk], rounds[plan.pk]) for plan in late],
                              NoticeKind.ESCALATION)
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


def _still_to_tell(kind, plan_status) -> bool:
    """A queued notice is still worth sending: an escalation always, the others while the plan waits."""
    return kind == NoticeKind.ESCALATION or plan_status == PlanStatus.PENDING_APPROVAL


def _minute_left(user_id, last_sent, now) -> float | None:
    """The seconds until the person may get another email, with their flush's flag kept set (it
    retries then); None when the minute is over."""
    if last_sent and now - last_sent < EMAIL_INTERVAL:
        _EMAIL_WAKE.arm(user_id, now=now)
        return (last_sent + EMAIL_INTERVAL - now).total_seconds()
    return None


def _mark(pks: list, **fields) -> None:
    """Update these notices, a thousand ids a statement (SQLite caps a statement's parameters)."""
    for start in range(0, len(pks), 1000):
        Notice.objects.filter(pk__in=pks[start:start + 1000]).update(**fields)


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
        queued = (Notice.objects.filter(user_id=user_id, channel=NoticeChannel.EMAIL, status=NoticeStatus.QUEUED)
                  .order_by("created_at").values_list("pk", "kind", "plan__status"))
        live, stale = [], []
        for pk, kind, plan_status in queued:
            (live if _still_to_tell(kind, plan_status) else stale).append(pk)
        if stale:  # decided or gone meanwhile: nothing to tell
            _mark(stale, status=NoticeStatus.SENT, error="decided before sending", sent_at=now)
        if not live:
            return None
        shown = list(Notice.objects.select_related("user", "plan__portal", "plan__agent")
                     .filter(pk__in=live[:DIGEST_LINES]).order_by("created_at"))
        user = shown[0].user
        if len(live) == 1:
            subject = f"Plan {str(shown[0].plan_id)[:8]} on {shown[0].plan.portal.slug} {_about(shown[0])}"
        else:
            subject = f"{len(live)} plans wait for your decision"
        more = f"\n\n... and {len(live) - len(shown)} more." if len(live) > len(shown) else ""
        body = ("\n\n".join(_line(n) for n in shown) + more
                + f"\n\nYour inbox: {settings.SITE_URL.rstrip('/')}/approvals/\n")
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [user.email])
        except Exception as exc:  # noqa: BLE001 - a failed notice never blocks a plan
            _mark(live, status=NoticeStatus.FAILED, error=redact(f"{type(exc).__name__}: {exc}")[:500])
            return None
        _mark(live, status=NoticeStatus.SENT, sent_at=now)
        mailbox.last_sent_at = now
        mailbox.save(update_fields=["last_sent_at"])
    return None


def send_bitrix(*, notice_id) -> float | None:
    """One notice as its own `im.notify.system.add` to the approver's Bitrix24 user on the plan's
    portal: what earlier releases queued per notice (`tasks.send_bitrix_notice` messages still in
    a broker); notices are now sent by their portal's digest (`flush_bitrix`). Returns the seconds
    to wait when the portal's limiter defers it."""
    notice = Notice.objects.select_related("plan__portal", "plan__agent", "user").filter(pk=notice_id).first()
    if notice is None or notice.status != NoticeStatus.QUEUED:
        return None
    target = ApproverBitrixUser.objects.filter(user=notice.user, portal=notice.plan.portal).first()
    if target is None:
        Notice.objects.filter(pk=notice.pk).update(status=NoticeStatus.FAILED, error="no Bitrix24 user id any more")
        return None
    plan = notice.plan
    message = _bitrix_message([notice], 1)
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


def _bitrix_message(shown: list[Notice], count: int) -> str:
    """One person's Bitrix24 message: one plan as before the digest, or the first
    `BITRIX_DIGEST_LINES` of `count` with a link to the rest."""
    if count == 1:
        plan = shown[0].plan
        return (f"Plan {describe.summary(plan.steps)} by agent {plan.agent.slug} {_about(shown[0])}: "
                f"[URL={plan_link(plan.pk)}]open it[/URL]")
    lines = [f"{count} plans on {shown[0].plan.portal.slug} wait for your decision:"]
    lines += [f"- {describe.summary(n.plan.steps)} by agent {n.plan.agent.slug} {_about(n)}: "
              f"[URL={plan_link(n.plan_id)}]open it[/URL]" for n in shown]
    if count > len(shown):
        lines.append(f"... and {count - len(shown)} more: [URL={settings.SITE_URL.rstrip('/')}/approvals/]"
                     f"your inbox[/URL]")
    return "\n".join(lines)


def _claim_bitrix(portal_id, now) -> list[tuple[int, int]]:
    """Take the portal's queued Bitrix24 notices (oldest first, up to `BITRIX_RUN_LIMIT`): those
    of plans no longer waiting are done (nothing to tell), the rest become `sending`. Rows another
    digest holds are skipped. Returns (notice pk, user id) of the taken."""
    with transaction.atomic():
        queued = list(Notice.objects.select_for_update(skip_locked=True, of=("self",))
                      .filter(channel=NoticeChannel.BITRIX, status=NoticeStatus.QUEUED, plan__portal_id=portal_id)
                      .order_by("created_at").values_list("pk", "user_id", "kind", "plan__status")[:BITRIX_RUN_LIMIT])
        live, stale = [], []
        for pk, user_id, kind, plan_status in queued:
            (live if _still_to_tell(kind, plan_status) else stale).append((pk, user_id))
        _mark([pk for pk, _ in stale], status=NoticeStatus.SENT, error="decided before sending", sent_at=now)
        _mark([pk for pk, _ in live], status=NoticeStatus.SENDING, sent_at=now)
    return live


def flush_bitrix(*, portal_id) -> float | None:
    """Send the portal's queued Bitrix24 notices: one `im.notify.system.add` per person, listing
    what queued for them (`_bitrix_message`), `MAX_BATCH` people to a `batch` request with
    halt=0, each request one slot of the portal's limiter. Returns the seconds to wait when the
    limiter defers a request: what was not sent is queued again, and the task retries then as
    the portal's one digest meanwhile (its wake flag kept set). A refused command fails only its
    person's notices; a request that fails fails those it carried."""
    now = timezone.now()
    _BITRIX_WAKE.clear(portal_id)  # before the read: a notice committed from now on queues a new digest
    taken = _claim_bitrix(portal_id, now)
    if not taken:
        return None
    people = defaultdict(list)
    for pk, user_id in taken:
        people[user_id].append(pk)
    target = dict(ApproverBitrixUser.objects.filter(portal_id=portal_id, user_id__in=people)
                  .values_list("user_id", "bitrix_user_id"))
    gone = [pk for user_id in people if user_id not in target for pk in people[user_id]]
    _mark(gone, status=NoticeStatus.FAILED, error="no Bitrix24 user id any more")
    told = sorted(set(people) & set(target))
    shown = defaultdict(list)  # each person's first BITRIX_DIGEST_LINES notices, read in one query
    for notice in (Notice.objects.select_related("plan__portal", "plan__agent").order_by("created_at")
                   .filter(pk__in=[pk for user_id in told for pk in people[user_id][:BITRIX_DIGEST_LINES]])):
        shown[notice.user_id].append(notice)
    commands, carried = [], {}  # carried: command name -> the notices it tells of
    for user_id in told:
        message = _bitrix_message(shown[user_id], len(people[user_id]))
        name = f"u{user_id}"
        carried[name] = people[user_id]
        commands.append((name, "im.notify.system.add", {"USER_ID": target[user_id], "MESSAGE": message}))
    portal = Portal.objects.filter(pk=portal_id).first()
    if portal is None:  # deleted meanwhile, its plans and notices with it
        return None
    client, deferred = BitrixClient(portal), 0
    for start in range(0, len(commands), MAX_BATCH):
        chunk = commands[start:start + MAX_BATCH]
        try:
            result = client.batch(chunk, halt=False)
        except NotSent as exc:  # nothing of this request or the next ones went out: queued again
            unsent = [pk for name, _m, _p in commands[start:] for pk in carried[name]]
            _mark(unsent, status=NoticeStatus.QUEUED, sent_at=None)
            _BITRIX_WAKE.arm(portal_id)
            return max(1.0, exc.retry_after or 5.0)
        except BitrixError as exc:
            _mark([pk for name, _m, _p in chunk for pk in carried[name]], status=NoticeStatus.FAILED,
                  error=redact(exc.description or exc.code)[:500])
            continue
        deferred += _settle_bitrix(result, chunk, carried)
    if deferred:  # the portal put some commands off: the task retries as the portal's digest
        _BITRIX_WAKE.arm(portal_id)
        return 5.0
    if len(taken) == BITRIX_RUN_LIMIT:
        _flush_bitrix({portal_id})  # more may wait: a new run takes them
    return None


def _settle_bitrix(result, chunk, carried) -> int:
    """Each person's notices as their command ended: sent, refused (failed with the portal's
    words) or, when the portal deferred it, queued again for the next digest (their number is
    returned)."""
    sent, again = [], []
    for name, _method, _params in chunk:
        pks, error = carried[name], result.errors.get(name)
        if error is None and name in result.results:
            sent += pks
        elif error is not None and issubclass(classify_error(None, error.get("error")), NotSent):
            again += pks
        else:
            words = (error or {}).get("error_description") or (error or {}).get("error") or "no answer in the batch"
            _mark(pks, status=NoticeStatus.FAILED, error=redact(str(words))[:500])
    _mark(sent, status=NoticeStatus.SENT, sent_at=timezone.now())
    _mark(again, status=NoticeStatus.QUEUED, sent_at=None)
    return len(again)
