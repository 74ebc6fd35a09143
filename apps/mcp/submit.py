"""submit_plan over the plan services: what `POST /api/v1/plans` does, without HTTP.

TODO(lead): apps/plans/services.py is getting the whole submit workflow (idempotency, dry run)
in `plan_submit`; when it lands, `mcp_submit` becomes one call to it. Until then it reproduces
`apps.plans.api._submit` through public functions. With main's `plan_submit(..., idempotency_key,
request_hash, single_call, dry_run) -> Submission` the body becomes:

    req = parse_submit(body, header_key=None)
    submission = services.plan_submit(
        agent=agent, portal=services.portal_for_agent(agent=agent, slug=req.portal), steps=req.steps,
        reason=req.reason, callback_url=req.callback_url, idempotency_key=req.idempotency_key,
        request_hash=req.request_hash, single_call=req.single, dry_run=dry_run)
    if submission.dry_run is not None:
        return "dry_run", {"dry_run": True, **dataclasses.asdict(submission.dry_run)}
    return "plan", wait_for_final(agent, plans_for_agent(agent).get(pk=submission.plan.pk), wait)

and `_evaluate`/`dry_run_answer` go (tests/integration/mcp covers both paths).
"""

import time

from apps.core.exceptions import InvalidRequest
from apps.plans import idempotency, services
from apps.plans.choices import FINAL_FOR_WAIT
from apps.plans.schemas import parse_submit
from apps.plans.selectors import plans_for_agent


def wait_for_final(agent, plan, seconds: int):
    """Re-read the plan until it is final or `seconds` pass (the API's `?wait=`)."""
    deadline = time.monotonic() + seconds
    while plan.status not in FINAL_FOR_WAIT:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(0.25, remaining))
        plan = plans_for_agent(agent).get(pk=plan.pk)
    return plan


def _evaluate(agent, portal, req):
    try:
        return services.plan_evaluate(agent=agent, portal=portal, steps=req.steps)
    except InvalidRequest as exc:
        field = exc.extra.get("field", "")
        if req.single and isinstance(field, str) and field.startswith("steps.0."):
            exc.extra["field"] = field.removeprefix("steps.0.")
        elif req.single and field == "steps":
            exc.extra["field"] = "method"
        raise


def dry_run_answer(decision) -> dict:
    status = None
    if decision.allowed:
        status = "approved" if decision.approvals_required == 0 else "pending_approval"
    return {
        "dry_run": True, "allowed": decision.allowed, "outcome": decision.outcome, "would_be": status,
        "risk": decision.risk, "approvals_required": decision.approvals_required, "packs": list(decision.packs),
        "reasons": list(decision.reasons), "missing": [dict(m) for m in decision.missing],
        "checked": [dict(c) for c in decision.checked], "steps": services.normalized_steps(decision),
    }


def mcp_submit(*, agent, body: dict, wait: int, dry_run: bool):
    """Returns ("dry_run", answer) or ("plan", plan). Raises the API's errors."""
    req = parse_submit(body, header_key=None)
    portal = services.portal_for_agent(agent=agent, slug=req.portal)
    if dry_run:
        return "dry_run", dry_run_answer(_evaluate(agent, portal, req))
    record = None
    if req.idempotency_key is not None:
        claim = idempotency.claim(agent=agent, key=req.idempotency_key, request_hash=req.request_hash)
        if claim.replay is not None:
            return "plan", wait_for_final(agent, plans_for_agent(agent).get(pk=claim.replay.pk), wait)
        record = claim.record
    try:
        plan = services.plan_submit(
            agent=agent, portal=portal, steps=req.steps, reason=req.reason, callback_url=req.callback_url,
            decision=_evaluate(agent, portal, req),
            on_created=(lambda p: idempotency.bind(record, p)) if record else None,
        )
    except BaseException:
        if record is not None:
            idempotency.release(record)
        raise
    return "plan", wait_for_final(agent, plans_for_agent(agent).get(pk=plan.pk), wait)
