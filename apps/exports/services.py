"""Export services: every write to exports goes through here.

An export request becomes a plan (one step: the list call exactly as the agent sent it, without
paging parameters) through `apps.plans.services.plan_submit`, so the same grants, policy,
approval pages, decision rules, idempotency keys and audit apply as to any read plan. The plan's
execution is the export's first page: it proves the call is accepted and gives the estimated
total. Once the plan has succeeded the rows are fetched here, a batch at a time
(`apps.exports.paging`), through the portal's transport and shared limiter
(`apps.bitrix.client.BitrixClient`), appended to the file and the progress saved after each
batch. A run holds a lease (`lease`, `heartbeat_at`); it works for at most `EXPORT_SLICE_SECONDS`
and then hands over to a fresh task, and a run whose worker died (heartbeat older than
`EXPORT_STALE_SECONDS`) is taken over from the saved progress.
"""

import datetime
import logging
import random
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.audit import registry as audit_registry
from apps.audit.services import audit_record
from apps.bitrix.client import BitrixClient
from apps.bitrix.errors import AuthFailed, BitrixError, Deferred, NotSent, OutcomeUnknown, classify_error
from apps.core.exceptions import Conflict, IdempotencyMismatch, InvalidRequest, NotAllowed, NotFound
from apps.plans.choices import PlanStatus
from apps.plans.evaluation import plan_evaluate
from apps.plans.services import plan_cancel, plan_submit
from apps.plans.states import StaleState
from apps.policy import catalog
from apps.policy.errors import PolicyInputError
from apps.policy.normalize import normalize_method

from . import files, paging
from .choices import TERMINAL_STATES, WAITING_STATES, ExportStatus, Strategy
from .models import Export

logger = logging.getLogger(__name__)
E = ExportStatus
P = PlanStatus

EXPORT_SUBMITTED = audit_registry.register("export.submitted", "An agent asked for a list export")
EXPORT_TRANSITION = audit_registry.register("export.transition", "A list export changed state")
EXPORT_FILE_REMOVED = audit_registry.register("export.file_removed", "An export file was removed after its retention")

STEP_NAME = "export"
MAX_UNKNOWN_RETRIES = 8  # consecutive lost answers before the export gives up
PLAN_POLL_SECONDS = 1.0
PLAN_POLLS = 60  # then the periodic dispatcher looks every EXPORT_DISPATCH_INTERVAL


# --------------------------------------------------------------------------- submission


@lru_cache(maxsize=1)
def exportable_names() -> tuple[str, ...]:
    """The methods an export takes: every documented REST v2 list method of risk `read` (a name
    ending in `.list`), spelled as documented or in lower case."""
    names = set()
    for info in catalog.all_methods():
        if info.v2 and info.risk == "read" and info.name.lower().endswith(".list"):
            names |= {info.name, info.name.lower()}
    return tuple(sorted(names))


def exportable_method(raw) -> str:
    """The normalised (lower-case) name of an exportable method, or InvalidRequest."""
    if not isinstance(raw, str) or raw not in exportable_names():
        raise InvalidRequest(
            f"{str(raw)[:128]!r} cannot be exported: exports take a documented REST v2 list method "
            "(a read whose name ends in .list, e.g. crm.lead.list).", field="method")
    return normalize_method(raw)


def export_params(*, select: list, filter_: dict, order: dict) -> dict:
    """The list call's parameters as the agent sent them: what the plan holds and approvers see."""
    params = {}
    if select:
        params["select"] = list(select)
    if filter_:
        params["filter"] = dict(filter_)
    if order:
        params["order"] = dict(order)
    return params


@dataclass(frozen=True)
class ExportSubmission:
    export: Export
    replayed: bool = False


def export_submit(*, agent, portal, method: str, select: list, filter_: dict, order: dict, fmt: str,
                  reason: str = "", idempotency_key: str | None = None,
                  request_hash: str | None = None) -> ExportSubmission:
    """Check the method is exportable, submit its plan (policy; 403 as for plans) and create the
    export beside it in one transaction. A replayed idempotency key answers the export it made."""
    name = exportable_method(method)
    steps = [{"name": STEP_NAME, "method": name, "params": export_params(select=select, filter_=filter_, order=order)}]
    with transaction.atomic():
        submission = plan_submit(agent=agent, portal=portal, steps=steps, reason=reason,
                                 idempotency_key=idempotency_key, request_hash=request_hash)
        plan = submission.plan
        if submission.replayed:
            export = Export.objects.filter(plan=plan, agent=agent).first()
            if export is None:  # the key made a plain plan
                raise IdempotencyMismatch()
            return ExportSubmission(export=export, replayed=True)
        status = E.QUEUED if plan.status in (P.APPROVED, P.EXECUTING, P.SUCCEEDED) else E.PENDING_APPROVAL
        export = Export.objects.create(agent=agent, portal=portal, plan=plan, method=name, select=list(select),
                                       filter=dict(filter_), order=dict(order), format=fmt, status=status)
        audit_record(action=EXPORT_SUBMITTED, actor=agent, portal=portal, plan=plan,
                     data={"export": str(export.pk), "method": name, "format": fmt, "status": status})
        if status == E.QUEUED:
            enqueue_run(export.pk, countdown=PLAN_POLL_SECONDS)
    return ExportSubmission(export=export)


def enqueue_run(export_id, *, countdown: float | None = None, polls: int = 0) -> None:
    """The one way a run is queued: the id, published when the transaction commits."""
    from .tasks import run_export

    kwargs = {"polls": polls} if polls else {}
    run_export.apply_async_on_commit(args=(str(export_id),), kwargs=kwargs, countdown=countdown)


# --------------------------------------------------------------------------- state changes


def _transition(export: Export, *, source, target: str, actor=None, data: dict | None = None, **fields) -> bool:
    """Conditional UPDATE (someone else may have moved it) plus its audit entry; False if lost."""
    sources = [source] if isinstance(source, str) else list(source)
    now = timezone.now()
    if target in TERMINAL_STATES:
        fields.setdefault("finished_at", now)
        fields.setdefault("lease", "")
    with transaction.atomic():
        changed = Export.objects.filter(pk=export.pk, status__in=sources).update(status=target, updated_at=now,
                                                                                 **fields)
        if not changed:
            return False
        audit_record(action=EXPORT_TRANSITION, actor=actor, portal=export.portal, plan=export.plan_id,
                     data={"export": str(export.pk), "from": export.status, "to": target, **(data or {})})
    for key, value in fields.items():
        setattr(export, key, value)
    export.status = target
    return True


def _fail(export: Export, code: str, message: str, **extra) -> None:
    _transition(export, source=[*WAITING_STATES, E.RUNNING], target=E.FAILED, data={"error": code},
                error={"code": code, "message": message, **extra})
    files.remove(files.export_path(export))


def export_stop(*, export_id, user) -> Export:
    """An approver of the export's portal stops an approved export, queued or fetching (the admin's
    action): it ends `cancelled`, recorded as theirs, and its partial file is removed, as when the
    agent cancels it. One still waiting for approval is decided on its plan (rejected), where the
    approver sees what it reads. A final one answers Conflict."""
    from apps.plans.selectors import user_may_decide

    with transaction.atomic():
        export = (Export.objects.select_for_update(of=("self",)).select_related("portal")
                  .filter(pk=export_id).first())
        if export is None:
            raise NotFound("No such export.")
        if not user_may_decide(user=user, portal=export.portal):
            raise NotAllowed(f"{user.get_username()} may not stop exports on portal {export.portal.slug}.")
        if export.status in TERMINAL_STATES:
            raise Conflict(f"The export is {export.status}; only an approved export can be stopped.",
                           status=export.status)
        if export.status == E.PENDING_APPROVAL:
            raise Conflict("The export waits for approval: reject its plan instead.", status=export.status)
        if not _transition(export, source=export.status, target=E.CANCELLED, actor=user,
                           data={"stopped_by": "approver", "rows": export.rows_written}):
            raise Conflict("The export has already moved on; reload it.", status=export.status)  # pragma: no cover
        transaction.on_commit(lambda: files.remove(files.export_path(export)))
    return export


def export_cancel(*, export_id, agent) -> Export:
    """The agent stops its own export (another agent's answers NotFound, as a missing one).

    Waiting for approval (or approved, not yet run): its plan is cancelled too, through the plans'
    own service, in the same transaction. Queued or running: the export alone ends `cancelled`
    (a plan that already ran stays as it is). A run in progress notices at its next save (the
    progress update is conditional on `running` and changes no row any more), stops and removes
    its partial file; the file is removed here too once the transaction commits, for a run that
    holds no lease (between slices, waiting to retry). A final export answers Conflict."""
    with transaction.atomic():
        export = (Export.objects.select_for_update(of=("self",)).select_related("plan", "portal")
                  .filter(pk=export_id, agent=agent).first())
        if export is None:
            raise NotFound("No such export.")
        if export.status in TERMINAL_STATES:
            raise Conflict(f"The export is {export.status}; only a waiting or running export can be cancelled.",
                           status=export.status)
        plan_status = export.plan.status
        if plan_status in (P.PENDING_APPROVAL, P.APPROVED):
            try:
                plan_status = plan_cancel(plan_id=export.plan_id, agent=agent).status
            except StaleState:  # the plan moved on meanwhile (it runs): the export stops alone
                export.plan.refresh_from_db(fields=["status"])
                plan_status = export.plan.status
        if not _transition(export, source=export.status, target=E.CANCELLED, actor=agent,
                           data={"plan": plan_status, "rows": export.rows_written}):
            raise Conflict("The export has already moved on; reload it.", status=export.status)  # pragma: no cover
        transaction.on_commit(lambda: files.remove(files.export_path(export)))
    return export


_PLAN_ENDS = {
    P.REJECTED: (E.REJECTED, None),
    P.EXPIRED: (E.EXPIRED, None),
    P.CANCELLED: (E.CANCELLED, None),
    P.FAILED: (E.FAILED, "plan_failed"),
    P.NEEDS_RECONCILIATION: (E.FAILED, "plan_failed"),
}


def _follow_plan(export: Export) -> str:
    """A waiting export follows its plan: 'start', 'poll' (the plan is about to run) or 'wait'
    (approvers), or the export ends with the plan ('ended')."""
    plan = export.plan
    if plan.status == P.SUCCEEDED:
        return "start"
    if plan.status in (P.APPROVED, P.EXECUTING, P.SUBMITTED):
        if export.status == E.PENDING_APPROVAL:
            _transition(export, source=E.PENDING_APPROVAL, target=E.QUEUED, data={"plan": plan.status})
        return "poll"
    if plan.status == P.PENDING_APPROVAL:
        return "wait"
    target, code = _PLAN_ENDS[plan.status]
    error = {"code": code, "message": "The export's plan failed; see the plan.", "plan_error": plan.error} \
        if code else {"code": f"plan_{plan.status}", "message": f"The export's plan was {plan.status}."}
    _transition(export, source=WAITING_STATES, target=target, data={"plan": plan.status}, error=error)
    return "ended"


def _plan_total(plan) -> int | None:
    step = ((plan.result or {}).get("steps") or {}).get(STEP_NAME) or {}
    total = step.get("total")
    return int(total) if isinstance(total, int) and not isinstance(total, bool) and total >= 0 else None


def _plan_rows(plan):
    step = ((plan.result or {}).get("steps") or {}).get(STEP_NAME) or {}
    return step.get("result")


def _start(export: Export) -> bool:
    """Choose the paging technique from the order and the first page the plan fetched."""
    by_id, descending = paging.order_by_id(export.order)
    first = _plan_rows(export.plan)
    strategy = Strategy.ID_CHAIN if by_id and isinstance(first, list) else Strategy.OFFSETS
    select, drop_id = (paging.chain_select(export.select) if strategy == Strategy.ID_CHAIN
                       else (list(export.select), False))
    first_rows = paging.rows_of(first) or []
    columns = files.columns_for(select, first_rows[0] if first_rows and isinstance(first_rows[0], dict) else None,
                                drop_id)
    last_id = paging.initial_last_id(export.filter, descending) if strategy == Strategy.ID_CHAIN else None
    return _transition(
        export, source=WAITING_STATES, target=E.RUNNING,
        data={"strategy": strategy, "total_estimate": _plan_total(export.plan)},
        strategy=strategy, id_descending=descending, drop_id=drop_id, columns=columns, last_id=last_id,
        total_estimate=_plan_total(export.plan), started_at=timezone.now(),
    )


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class RunOutcome:
    status: str  # the export's status afterwards, or "skipped"
    again_in: float | None = None  # queue another run after this many seconds
    polls: int = 0


def _claim(export: Export) -> str | None:
    """Take the lease of a running export: free, or held by a worker whose heartbeat is stale."""
    token = uuid.uuid4().hex
    now = timezone.now()
    stale = now - datetime.timedelta(seconds=settings.EXPORT_STALE_SECONDS)
    taken = Export.objects.filter(
        Q(lease="") | Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True), pk=export.pk, status=E.RUNNING,
    ).update(lease=token, heartbeat_at=now)
    return token if taken else None


def _release(export: Export, token: str) -> bool:
    """Hand the lease back; False when the export is no longer running under it (cancelled)."""
    return bool(Export.objects.filter(pk=export.pk, lease=token, status=E.RUNNING).update(
        lease="", heartbeat_at=timezone.now()))


def _policy_refusal(export: Export) -> str | None:
    """The plan's policy under the agent's grants now: a revoked grant stops the export."""
    if not export.agent.is_active or not export.portal.is_active:
        return "The agent or the portal was deactivated."
    try:
        decision = plan_evaluate(agent=export.agent, portal=export.portal, steps=export.plan.steps)
    except PolicyInputError as exc:
        return exc.message
    if not decision.allowed:
        return "The grants no longer allow this export."
    if decision.approvals_required > export.plan.approvals_required:
        return "The policy now needs more approvals than the export's plan had."
    return None


def export_run(*, export_id, polls: int = 0, budget: float | None = None) -> RunOutcome:
    """One run of an export: follow its plan while it waits; fetch batches while it runs, for at
    most `budget` seconds (EXPORT_SLICE_SECONDS)."""
    export = Export.objects.select_related("plan", "portal", "agent").filter(pk=export_id).first()
    if export is None or export.status in TERMINAL_STATES:
        return RunOutcome("skipped")
    if export.status in WAITING_STATES:
        step = _follow_plan(export)
        if step == "poll":
            if polls < PLAN_POLLS:
                return RunOutcome(export.status, again_in=PLAN_POLL_SECONDS, polls=polls + 1)
            return RunOutcome(export.status)  # the dispatcher looks again later
        if step != "start":
            return RunOutcome(export.status)
        if not _start(export):
            return RunOutcome("skipped")
    token = _claim(export)
    if token is None:
        return RunOutcome("skipped")
    export.refresh_from_db()
    refusal = _policy_refusal(export)
    if refusal:
        _fail(export, "policy_refused", refusal + " The export stopped.")
        return RunOutcome(export.status)
    try:
        return _fetch(export, token, budget=settings.EXPORT_SLICE_SECONDS if budget is None else budget)
    except BaseException:
        _release(export, token)
        raise


def _backoff(retries: int, at_least: float | None) -> float:
    ceiling = min(120.0, 2.0 * 2 ** max(0, retries - 1))
    return max(random.uniform(ceiling / 2, ceiling), at_least or 0.0)


def _fetch(export: Export, token: str, *, budget: float) -> RunOutcome:
    client = BitrixClient(export.portal)
    path = files.export_path(export)
    size = path.stat().st_size if path.exists() else 0
    if size < export.file_bytes:
        _fail(export, "file_lost", "The export's file is shorter than the progress saved; start a new export.")
        return RunOutcome(export.status)
    deadline = time.monotonic() + budget
    chain = export.strategy == Strategy.ID_CHAIN
    select = paging.chain_select(export.select)[0] if chain else list(export.select)
    while True:
        began = time.monotonic()
        pages = paging.pages_wanted(total=export.total_estimate, taken=export.rows_written)
        if chain:
            commands = paging.chain_commands(method=export.method, select=select, filter_=export.filter,
                                             last_id=export.last_id, descending=export.id_descending, pages=pages)
        else:
            commands = paging.offset_commands(method=export.method, select=select, filter_=export.filter,
                                              order=export.order, offset=export.next_offset, pages=pages)
        try:
            answer = client.batch(commands, halt=False)
        except (NotSent, OutcomeUnknown) as exc:
            return _retry_later(export, token, exc)
        except AuthFailed as exc:
            _fail(export, "portal_error", exc.description or exc.code, cause=exc.as_dict())
            return RunOutcome(export.status)
        except BitrixError as exc:
            _fail(export, "portal_error", exc.description or exc.code, cause=exc.as_dict())
            return RunOutcome(export.status)
        names = [name for name, _m, _p in commands]
        if chain:
            taken = paging.take_chain(names=names, results=answer.results, errors=answer.errors,
                                      last_id=export.last_id, descending=export.id_descending)
        else:
            taken = paging.take_offsets(names=names, results=answer.results, errors=answer.errors,
                                        offset=export.next_offset)
        if not _save(export, token, taken, requests=1, seconds=time.monotonic() - began):
            return _stopped(export)  # cancelled, or the lease was taken over
        if taken.error is not None:
            cls = classify_error(None, taken.error.get("error"))
            if issubclass(cls, NotSent) and taken.error.get("error") != "NO_ID":
                return _retry_later(export, token, cls(taken.error.get("error"), taken.error.get("error_description"),
                                                       retry_after=None))
            _fail(export, "portal_error", taken.error.get("error_description") or taken.error.get("error"),
                  cause=taken.error, page=taken.error_page)
            return RunOutcome(export.status)
        if taken.done:
            retention = datetime.timedelta(hours=settings.EXPORT_RETENTION_HOURS)
            if not _transition(export, source=E.RUNNING, target=E.SUCCEEDED,
                               data={"rows": export.rows_written, "requests": export.requests,
                                     "bytes": export.file_bytes},
                               expires_at=timezone.now() + retention):
                return _stopped(export)
            return RunOutcome(export.status)
        if time.monotonic() >= deadline:
            if not _release(export, token):
                return _stopped(export)
            return RunOutcome(export.status, again_in=0.0)


def _save(export: Export, token: str, taken: paging.Taken, *, requests: int, seconds: float) -> bool:
    """Append the rows to the file, then save the progress (with the file's new length) under
    the lease. A crash between the two leaves bytes past `file_bytes`: cut off on resume."""
    path = files.export_path(export)
    # Still ours? Checked right before writing (a takeover needs EXPORT_STALE_SECONDS without a
    # heartbeat, far longer than from here to the write), so two runs never write the file at once.
    if not Export.objects.filter(pk=export.pk, lease=token, status=E.RUNNING).update(heartbeat_at=timezone.now()):
        return False
    rows = taken.rows
    header = export.format == "csv" and export.file_bytes == 0
    if header and not export.columns and rows and isinstance(rows[0], dict):
        export.columns = files.columns_for(export.select, rows[0], export.drop_id)
    data = files.encode(rows, fmt=export.format, columns=export.columns, drop_id=export.drop_id, header=header)
    new_size = files.append(path, at=export.file_bytes, data=data) if data or not path.exists() else export.file_bytes
    fields = {
        "rows_written": export.rows_written + len(rows), "file_bytes": new_size, "columns": export.columns,
        "requests": export.requests + requests, "active_seconds": export.active_seconds + seconds,
        "heartbeat_at": timezone.now(), "retries": 0,
    }
    if export.strategy == Strategy.ID_CHAIN:
        fields["last_id"] = taken.last_id
    else:
        fields["next_offset"] = taken.next_offset
    saved = Export.objects.filter(pk=export.pk, lease=token, status=E.RUNNING).update(**fields)
    if saved:
        for key, value in fields.items():
            setattr(export, key, value)
    return bool(saved)


def _stopped(export: Export) -> RunOutcome:
    """A run found its export no longer `running` under its lease (0 rows updated): cancelled
    (remove the partial file, which this run may have written after the cancel removed it), or
    taken over by another worker (leave everything to it)."""
    status = Export.objects.filter(pk=export.pk).values_list("status", flat=True).first()
    if status == E.CANCELLED:
        files.remove(files.export_path(export))
        export.status = status
        return RunOutcome(status)
    return RunOutcome("skipped")


def _retry_later(export: Export, token: str, exc: BitrixError) -> RunOutcome:
    """The portal or our limiter refused the batch before it ran, or its answer was lost (a
    read: safe to ask again from the saved progress)."""
    counted = not isinstance(exc, Deferred)
    retries = export.retries + (1 if counted else 0)
    if isinstance(exc, OutcomeUnknown) and retries > MAX_UNKNOWN_RETRIES:
        _fail(export, "portal_unavailable", "The portal's answers were lost too many times in a row.",
              cause=exc.as_dict())
        return RunOutcome(export.status)
    if not Export.objects.filter(pk=export.pk, lease=token, status=E.RUNNING).update(
            lease="", retries=retries, heartbeat_at=timezone.now()):
        return _stopped(export)
    delay = exc.retry_after if isinstance(exc, Deferred) else _backoff(retries, exc.retry_after)
    return RunOutcome(export.status, again_in=delay)


# --------------------------------------------------------------------------- periodic jobs


def exports_dispatch(*, now=None) -> int:
    """Queue a run for every export that can move: waiting exports whose plan has moved on, and
    running exports nobody holds (a lease released without a follow-up, or a dead worker's)."""
    now = now or timezone.now()
    stale = now - datetime.timedelta(seconds=settings.EXPORT_STALE_SECONDS)
    waiting = Export.objects.filter(status__in=WAITING_STATES).exclude(
        plan__status__in=[P.PENDING_APPROVAL, P.APPROVED, P.EXECUTING, P.SUBMITTED]).values_list("pk", flat=True)
    # A running export with no lease got one queued when it was released; look again only
    # once it has been left alone for the stale period too.
    running = Export.objects.filter(status=E.RUNNING).filter(
        Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True)).values_list("pk", flat=True)
    ids = [*waiting, *running]
    for export_id in ids:
        enqueue_run(export_id)
    return len(ids)


def exports_purge_expired(*, now=None) -> int:
    """Remove the files whose retention has passed; the export row stays, marked removed."""
    now = now or timezone.now()
    removed = 0
    due = Export.objects.filter(expires_at__lte=now, file_removed_at__isnull=True).select_related("portal")
    for export in due:
        with transaction.atomic():
            marked = Export.objects.filter(pk=export.pk, file_removed_at__isnull=True).update(file_removed_at=now)
            if not marked:
                continue
            audit_record(action=EXPORT_FILE_REMOVED, portal=export.portal, plan=export.plan_id,
                         data={"export": str(export.pk), "bytes": export.file_bytes})
        files.remove(files.export_path(export))
        removed += 1
    return removed
