import asyncio
import contextlib
import contextvars
import functools
import logging
import time
import uuid
import weakref
from collections import Counter

from django.db import connection
from django.db.models import Q

from apps.core import aio, sql, wakeup
from apps.core.exceptions import InvalidRequest, NotFound
from apps.portals.models import Portal

from .choices import FINAL_FOR_WAIT, PlanStatus
from .models import Plan

logger = logging.getLogger(__name__)


def plans_for_agent(agent):
    """Every plan query of the agent API starts here, so no other agent's plan can be reached
    (NetBox's `restrict()`)."""
    return Plan.objects.filter(agent=agent).select_related("portal", "preview").prefetch_related("approvals")


def plan_wait_final(*, agent, plan: Plan, seconds: float) -> Plan:
    """The plan once it is final, or as it is after `seconds`, for sync callers (a script, a
    shell; the API's and MCP's waits use `plan_await_final`). Woken by the transition
    (`apps.core.wakeup`); it blocks its thread meanwhile."""
    if plan.status in FINAL_FOR_WAIT or seconds <= 0:
        return plan
    deadline = wakeup.wait_deadline(seconds)
    with wakeup.subscribe([wakeup.plan_key(plan.pk)]) as sub:
        plan = plans_for_agent(agent).get(pk=plan.pk)  # after subscribing: no change is missed
        while plan.status not in FINAL_FOR_WAIT:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sub.wait_sync(min(remaining, wakeup.fallback_seconds()))
            plan = plans_for_agent(agent).get(pk=plan.pk)
    return plan


def _plan_reload(agent, plan_id) -> Plan:
    plan = plans_for_agent(agent).get(pk=plan_id)
    if plan.status not in FINAL_FOR_WAIT:
        aio.release_connections()  # it waits again; a final plan is rendered on this connection
    return plan


async def plan_await_final(*, agent, plan: Plan, seconds: float) -> Plan:
    """`plan_wait_final` for async views (the API's `?wait=`): between reads it holds no thread and
    no database connection (`apps.core.aio.park`); the transition's notify wakes it. The safety net
    for a lost notify is the event loop's `_FinalSweep`, not a re-read per waiter."""
    if plan.status in FINAL_FOR_WAIT or seconds <= 0:
        return plan
    deadline, unread = wakeup.wait_deadline(seconds), plan
    sweep = _FinalSweep.of_running_loop()
    with wakeup.subscribe([wakeup.plan_key(plan.pk)]) as sub, sweep.watching(plan.pk):
        # After subscribing no change is missed; what the caller read is still good unless the
        # status moved in between (what is rendered is read again when the wait ends anyway).
        if await aio.run_sync(_status_now, plan.pk) != plan.status:
            plan = await aio.run_sync(_plan_reload, agent, plan.pk)
        while plan.status not in FINAL_FOR_WAIT:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await aio.park()
            await sub.wait(remaining)
            plan = await aio.run_sync(_plan_reload, agent, plan.pk)
    if plan is unread:  # the caller's plan is rendered only as read after the wait (it may hold only a status)
        plan = await aio.run_sync(_plan_reload, agent, plan.pk)
    return plan


def plan_waiting(*, agent, plan: Plan, seconds: float, then) -> aio.Waiting:
    """What a view's sync part hands over when the answer waits for `plan` (`aio.long_poll`): its
    connections let go, then `plan_await_final`, then `then(plan)`. The API's and MCP's waits."""
    aio.release_connections()
    return aio.Waiting(wait=functools.partial(plan_await_final, agent=agent, plan=plan, seconds=seconds), then=then)


_STATUS = f"SELECT status FROM {Plan._meta.db_table} WHERE id = %s"  # noqa: S608  # nosec B608
_AGENTS_STATUS = _STATUS + " AND agent_id = %s"


def _db_id(plan_id):
    """A plan id as the database takes it (a uuid on PostgreSQL, 32 hex digits on SQLite)."""
    return Plan._meta.pk.get_db_prep_value(uuid.UUID(str(plan_id)), connection)


def plan_status_for_agent(*, agent, plan_id) -> str:
    """Only the status of one of the agent's plans (what a `?wait=` needs before it waits: it
    reads the whole plan once, when the wait ends). One fixed statement (apps.core.sql)."""
    row = sql.fetchone(_AGENTS_STATUS, [_db_id(plan_id), agent.pk]) if is_uuid(plan_id) else None
    if row is None:
        raise NotFound("No such plan.")
    return row[0]


def _status_now(plan_id) -> str | None:
    row = sql.fetchone(_STATUS, [_db_id(plan_id)])
    aio.release_connections()
    return row[0] if row else None


def _final_among(plan_ids: list[str]) -> list:
    found = []
    for start in range(0, len(plan_ids), 500):
        found += Plan.objects.filter(pk__in=plan_ids[start:start + 500], status__in=FINAL_FOR_WAIT).values_list(
            "pk", flat=True)
    aio.release_connections()
    return found


class _FinalSweep:
    """The safety net of an event loop's plan waits: every `WAKEUP_FALLBACK_SECONDS` one query
    for those of the plans waited on that are final, whose waiters it wakes as the transition's
    notify would have. A notify lost while Redis reconnects costs one sweep's delay, and 500
    parked waits cost one query per period instead of a re-read each (100 a second)."""

    _by_loop: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _FinalSweep]" = weakref.WeakKeyDictionary()

    def __init__(self):
        self.plans: Counter = Counter()
        self.task: asyncio.Task | None = None

    @classmethod
    def of_running_loop(cls) -> "_FinalSweep":
        loop = asyncio.get_running_loop()
        sweep = cls._by_loop.get(loop)
        if sweep is None:
            sweep = cls._by_loop[loop] = cls()
        return sweep

    @contextlib.contextmanager
    def watching(self, plan_id):
        key = str(plan_id)
        self.plans[key] += 1
        if self.task is None or self.task.done():
            # in a context of its own: the sweep outlives the request that started it
            self.task = asyncio.get_running_loop().create_task(self._run(), context=contextvars.Context())
        try:
            yield
        finally:
            self.plans[key] -= 1
            if self.plans[key] <= 0:
                del self.plans[key]

    async def _run(self) -> None:
        while self.plans:
            await asyncio.sleep(wakeup.fallback_seconds())
            plan_ids = list(self.plans)
            if not plan_ids:
                break
            try:
                final = await aio.run_sync(_final_among, plan_ids)
            except Exception:  # noqa: BLE001 - the next sweep tries again; the waits end at their deadlines
                logger.warning("the plan waits' fallback sweep failed", exc_info=True)
                continue
            if final:
                wakeup.wake_here(*(wakeup.plan_key(plan_id) for plan_id in final))


def plan_get_for_agent(*, agent, plan_id) -> Plan:
    plan = plans_for_agent(agent).filter(pk=plan_id).first() if is_uuid(plan_id) else None
    if plan is None:
        raise NotFound("No such plan.")
    return plan


def is_uuid(value) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def plan_list_for_agent(*, agent, status=None, portal=None, cursor=None, limit=50) -> list[Plan]:
    qs = plans_for_agent(agent)
    if status:
        if status not in PlanStatus.values:
            raise InvalidRequest(f"status is one of {', '.join(PlanStatus.values)}.", field="status")
        qs = qs.filter(status=status)
    if portal:
        qs = qs.filter(portal__slug=portal)
    if cursor:
        created_at, pk = cursor
        qs = qs.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, pk__lt=pk))
    return list(qs.order_by("-created_at", "-pk")[: limit + 1])


# --- who may decide: the one rule, used by the services (user_may_approve) and the admin ------


def portals_decidable_by(user):
    """Portals whose plans `user` may approve, reject or settle: an active user with the
    `plans.approve_plan` permission, on the portal's approver list. Being a superuser is not
    enough: an approver list names people, and the services refuse anyone else."""
    if user is None or not user.is_active or not user.has_perm("plans.approve_plan"):
        return Portal.objects.none()
    return Portal.objects.filter(approvers=user)


def plans_decidable_by(user):
    """Plans on the portals `user` may decide (`portals_decidable_by`)."""
    return Plan.objects.filter(portal__in=portals_decidable_by(user))


def user_may_decide(*, user, portal) -> bool:
    return portals_decidable_by(user).filter(pk=portal.pk).exists()


def personal_refusal(*, user, plan: Plan) -> str | None:
    """Why `user`, though an approver on the plan's portal, may not decide this pending plan
    (owner of the submitting agent, or decided already); None when they may."""
    if plan.agent.owner_id is not None and plan.agent.owner_id == user.pk:
        return "The owner of the submitting agent cannot decide its plans."
    if plan.approvals.filter(user=user).exists():
        return "You have already decided this plan; a second approver is needed."
    return None


def plan_decisions_for(*, user, plan: Plan) -> list[str]:
    """What `user` may do to `plan` now: approve/reject a pending plan (not as the owner of the
    submitting agent, not twice), settle one that needs reconciliation; nothing otherwise. The
    services check the same rules under the plan's row lock."""
    if not user_may_decide(user=user, portal=plan.portal):
        return []
    if plan.status == PlanStatus.PENDING_APPROVAL:
        return [] if personal_refusal(user=user, plan=plan) else ["approve", "reject"]
    if plan.status == PlanStatus.NEEDS_RECONCILIATION:
        return ["settle_succeeded", "settle_failed"]
    return []
