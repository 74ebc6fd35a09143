"""The agent API (JSON only, bearer auth). Views are adapters: parse, call one service, render."""

import dataclasses

from django.conf import settings

from apps.agents.auth import authenticate_agent
from apps.agents.ratelimit import check_rate
from apps.core.api import json_endpoint, parse_json_body
from apps.core.exceptions import InvalidRequest
from apps.policy.decide import describe_method
from apps.policy.selectors import agent_capabilities, grant_views_for

from . import services
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
from .selectors import plan_get_for_agent, plan_list_for_agent, plan_wait_final, plans_for_agent


def _agent(request):
    agent = authenticate_agent(request)
    check_rate(agent)
    return agent


def _wait_for_final(agent, plan, seconds: int):
    return plan_wait_final(agent=agent, plan=plan, seconds=seconds)


def _as_created(plan: Plan) -> Plan:
    """The plan this request just created, rendered as it was created without reading it back:
    no approval and no preview exist yet (a preview is read later, by a worker)."""
    plan._prefetched_objects_cache = {"approvals": Approval.objects.none()}
    Plan.preview.related.set_cached_value(plan, None)
    return plan


@json_endpoint("GET", "POST")
def plans(request):
    agent = _agent(request)
    if request.method == "POST":
        return _submit(request, agent)
    return _list(request, agent)


def _submit(request, agent):
    dry_run = parse_flag(request.GET.get("dry_run"), field="dry_run")
    wait = parse_wait(request.GET.get("wait"), maximum=settings.API_MAX_WAIT_SECONDS)
    req = parse_submit(parse_json_body(request), header_key=request.headers.get("Idempotency-Key"))
    submission = services.plan_submit(
        agent=agent, portal=services.portal_for_agent(agent=agent, slug=req.portal), steps=req.steps,
        reason=req.reason, callback_url=req.callback_url, idempotency_key=req.idempotency_key,
        request_hash=req.request_hash, single_call=req.single, dry_run=dry_run,
    )
    if submission.dry_run is not None:
        return {"dry_run": True, **dataclasses.asdict(submission.dry_run)}
    if wait or submission.replayed:
        plan = _wait_for_final(agent, plans_for_agent(agent).get(pk=submission.plan.pk), wait)
    else:
        plan = _as_created(submission.plan)
    if submission.replayed:
        return render_plan(plan), 200, {"Idempotent-Replayed": "true"}
    return render_plan(plan), 201, {"Location": f"/api/v1/plans/{plan.pk}"}


def _list(request, agent):
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
def plan_detail(request, plan_id):
    agent = _agent(request)
    wait = parse_wait(request.GET.get("wait"), maximum=settings.API_MAX_WAIT_SECONDS)
    plan = plan_get_for_agent(agent=agent, plan_id=plan_id)
    return render_plan(_wait_for_final(agent, plan, wait))


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
