"""The agent API (JSON only, bearer auth). Views are adapters: parse, call one service, render."""

import dataclasses
import functools
import uuid

from django.conf import settings

from apps.agents.auth import authenticate_agent
from apps.agents.ratelimit import check_rate
from apps.core import aio
from apps.core.api import json_endpoint, parse_json_body
from apps.core.exceptions import InvalidRequest
from apps.policy.decide import describe_method
from apps.policy.selectors import agent_capabilities, grant_views_for

from . import services
from .choices import FINAL_FOR_WAIT
from .models import Approval, Plan
from .openapi import openapi_document
from .schemas import (
    decode_cursor,
    encode_cursor,
    parse_flag,
    parse_limit,
    parse_submit,
    parse_wait,
    render_plan,
)
from .selectors import (
    plan_get_for_agent,
    plan_list_for_agent,
    plan_status_for_agent,
    plan_waiting,
    plans_for_agent,
)


def _agent(request):
    agent = authenticate_agent(request)
    check_rate(agent)
    return agent


def _as_created(plan: Plan) -> Plan:
    """The plan this request just created, rendered as it was created without reading it back:
    no approval and no preview exist yet (a preview is read later, by a worker)."""
    no_approvals = Approval.objects.none()
    no_approvals._result_cache, no_approvals._prefetch_done = [], True  # evaluated: iterating compiles nothing
    plan._prefetched_objects_cache = {"approvals": no_approvals}
    Plan.preview.related.set_cached_value(plan, None)
    return plan


# `?wait=` views are written once as their sync part (`aio.long_poll`): under ASGI the submit, the
# reads and the rendering run as sync code (one `run_sync` call each) and the wait is awaited on
# the plan's wake-up, holding no thread (`plan_await_final`); gunicorn's sync workers run the same
# parts in their own thread. `_waiting` is what the sync part hands to the wait.


def _waiting(agent, plan: Plan, seconds: int, then) -> aio.Waiting:
    return plan_waiting(agent=agent, plan=plan, seconds=seconds, then=then)


@json_endpoint("GET", "POST")
@aio.long_poll
def plans(request):
    if request.method == "POST":
        return _submit(request)
    return _list(request)


def _submit(request):
    agent = _agent(request)
    dry_run = parse_flag(request.GET.get("dry_run"), field="dry_run")
    wait = parse_wait(request.GET.get("wait"), maximum=settings.API_MAX_WAIT_SECONDS)
    req = parse_submit(parse_json_body(request), header_key=request.headers.get("Idempotency-Key"), strict_json=True)
    submission = services.plan_submit(
        agent=agent, portal=services.portal_for_agent(agent=agent, slug=req.portal), steps=req.steps,
        reason=req.reason, callback_url=req.callback_url, idempotency_key=req.idempotency_key,
        request_hash=req.request_hash, single_call=req.single, dry_run=dry_run,
    )
    if submission.dry_run is not None:
        return {"dry_run": True, **dataclasses.asdict(submission.dry_run)}
    # A replay answers the plan as it is now; a new plan as it was created (the wait reads it
    # again once it has subscribed to the plan's changes, so none is missed).
    plan = plans_for_agent(agent).get(pk=submission.plan.pk) if submission.replayed else _as_created(submission.plan)
    if wait and plan.status not in FINAL_FOR_WAIT:
        return _waiting(agent, plan, wait, functools.partial(_submitted, replayed=submission.replayed))
    return _submitted(plan, submission.replayed)


def _submitted(plan: Plan, replayed: bool):
    if replayed:
        return render_plan(plan), 200, {"Idempotent-Replayed": "true"}
    return render_plan(plan), 201, {"Location": f"/api/v1/plans/{plan.pk}"}


def _list(request):
    agent = _agent(request)
    limit = parse_limit(request.GET.get("limit"))
    cursor = request.GET.get("cursor")
    rows = plan_list_for_agent(
        agent=agent, status=request.GET.get("status") or None, portal=request.GET.get("portal") or None,
        cursor=decode_cursor(cursor) if cursor else None, limit=limit,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return {"plans": [render_plan(p) for p in rows], "next_cursor": encode_cursor(rows[-1]) if more else None}


@json_endpoint("GET")
@aio.long_poll
def plan_detail(request, plan_id):
    agent = _agent(request)
    wait = parse_wait(request.GET.get("wait"), maximum=settings.API_MAX_WAIT_SECONDS)
    if wait:  # a plan that is not final is read whole only when the wait ends
        status = plan_status_for_agent(agent=agent, plan_id=plan_id)
        if status not in FINAL_FOR_WAIT:
            return _waiting(agent, Plan(pk=uuid.UUID(plan_id), status=status), wait, render_plan)
    return render_plan(plan_get_for_agent(agent=agent, plan_id=plan_id))


@json_endpoint("POST")
def plan_cancel(request, plan_id):
    agent = _agent(request)
    plan = plan_get_for_agent(agent=agent, plan_id=plan_id)
    services.plan_cancel(plan_id=plan.pk, agent=agent)
    return render_plan(plan_get_for_agent(agent=agent, plan_id=plan.pk))


@json_endpoint("GET")
def capabilities(request):
    return agent_capabilities(agent=_agent(request))


@json_endpoint("GET")
def method_detail(request, name):
    agent = _agent(request)
    slug = request.GET.get("portal")
    if not slug:
        raise InvalidRequest("Name the portal: ?portal=<slug>.", field="portal")
    portal = services.portal_for_agent(agent=agent, slug=slug)
    described = describe_method(grant_views_for(agent=agent, portal=portal), name)
    return {"portal": portal.slug, **described}


@json_endpoint("GET")
def openapi(request):
    return openapi_document()
