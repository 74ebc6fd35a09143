"""submit_plan over the plan services: what `POST /api/v1/plans` does, without HTTP."""

import dataclasses

from apps.plans import services
from apps.plans.choices import FINAL_FOR_WAIT
from apps.plans.schemas import parse_submit
from apps.plans.selectors import plan_waiting, plans_for_agent


def wait_for_final(agent, plan, seconds: int):
    """The plan when it is final or nothing is to be waited for; otherwise `aio.Waiting` for it:
    the MCP endpoint awaits it as the API's `?wait=` does, holding no thread meanwhile."""
    if not seconds or plan.status in FINAL_FOR_WAIT:
        return plan
    return plan_waiting(agent=agent, plan=plan, seconds=seconds, then=lambda final: final)


def mcp_submit(*, agent, body: dict, wait: int, dry_run: bool):
    """Returns ("dry_run", answer) or ("plan", the plan or `aio.Waiting` for it). Raises the API's
    errors."""
    req = parse_submit(body, header_key=None)
    submission = services.plan_submit(
        agent=agent, portal=services.portal_for_agent(agent=agent, slug=req.portal), steps=req.steps,
        reason=req.reason, callback_url=req.callback_url, idempotency_key=req.idempotency_key,
        request_hash=req.request_hash, single_call=req.single, dry_run=dry_run)
    if submission.dry_run is not None:
        return "dry_run", {"dry_run": True, **dataclasses.asdict(submission.dry_run)}
    return "plan", wait_for_final(agent, plans_for_agent(agent).get(pk=submission.plan.pk), wait)
