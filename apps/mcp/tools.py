"""The MCP tools served at /mcp, over the same services and selectors as the JSON API.

Names, descriptions and schemas live in `clients/b24cp/mcp_tools.py`, shared with the stdio
server, so both transports offer the same tools with the same words.
"""

import functools
import json

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.http import HttpRequest, QueryDict

from apps.core import aio
from apps.core.exceptions import ApplicationError, InvalidRequest, NotFound
from apps.exports import services as export_services
from apps.exports.schemas import parse_export, render_export
from apps.exports.selectors import export_get_for_agent
from apps.plans import services
from apps.plans.schemas import decode_cursor, encode_cursor, render_plan
from apps.plans.selectors import plan_get_for_agent, plan_list_for_agent
from apps.policy.decide import describe_method
from apps.policy.selectors import grant_views_for
from clients.b24cp import mcp_tools

from .selectors import capabilities_for, events_view
from .submit import mcp_submit, wait_for_final


def tools_for_agent(agent) -> list[dict]:
    return mcp_tools.tools_for(capabilities_for(agent=agent), events_available=events_view() is not None)


def call_tool(*, request, agent, name: str, arguments: dict):
    """Run one tool with validated arguments; returns the JSON answer, or `aio.Waiting` for it (a
    plan or the event feed waited on). Raises ApplicationError."""
    handler = _HANDLERS[name]
    return handler(request, agent, arguments)


def _capabilities(request, agent, args):
    return capabilities_for(agent=agent)


def _describe(request, agent, args):
    portal = services.portal_for_agent(agent=agent, slug=args["portal"])
    described = describe_method(grant_views_for(agent=agent, portal=portal), args["name"])
    return mcp_tools.describe_answer({"portal": portal.slug, **described})


def _plan_answer(plan):
    return mcp_tools.plan_answer(render_plan(plan))


def _answer_when_final(plan_or_waiting):
    if isinstance(plan_or_waiting, aio.Waiting):
        return plan_or_waiting.map(_plan_answer)
    return _plan_answer(plan_or_waiting)


def _submit(request, agent, args):
    kind, answer = mcp_submit(agent=agent, body=mcp_tools.submit_body(args),
                              wait=min(args["wait"], settings.API_MAX_WAIT_SECONDS), dry_run=args["dry_run"])
    return answer if kind == "dry_run" else _answer_when_final(answer)


def _get(request, agent, args):
    plan = plan_get_for_agent(agent=agent, plan_id=args["plan_id"])
    return _answer_when_final(wait_for_final(agent, plan, min(args["wait"], settings.API_MAX_WAIT_SECONDS)))


def _cancel(request, agent, args):
    plan = plan_get_for_agent(agent=agent, plan_id=args["plan_id"])
    services.plan_cancel(plan_id=plan.pk, agent=agent)
    return mcp_tools.plan_answer(render_plan(plan_get_for_agent(agent=agent, plan_id=plan.pk)))


def _list(request, agent, args):
    limit = args["limit"]
    cursor = args.get("cursor")
    rows = plan_list_for_agent(agent=agent, status=args.get("status"), portal=args.get("portal"),
                               cursor=decode_cursor(cursor) if cursor else None, limit=limit)
    more = len(rows) > limit
    rows = rows[:limit]
    return {"plans": [mcp_tools.plan_answer(render_plan(p)) for p in rows],
            "next_cursor": encode_cursor(rows[-1]) if more else None}


def _start_export(request, agent, args):
    req = parse_export(mcp_tools.export_body(args), header_key=None)
    submission = export_services.export_submit(
        agent=agent, portal=services.portal_for_agent(agent=agent, slug=req.portal), method=req.method,
        select=req.select, filter_=req.filter, order=req.order, fmt=req.format, reason=req.reason,
        idempotency_key=req.idempotency_key, request_hash=req.request_hash)
    return mcp_tools.export_answer(render_export(export_get_for_agent(agent=agent, export_id=submission.export.pk)))


def _get_export(request, agent, args):
    return mcp_tools.export_answer(render_export(export_get_for_agent(agent=agent, export_id=args["export_id"])))


def _cancel_export(request, agent, args):
    export = export_get_for_agent(agent=agent, export_id=args["export_id"])
    export_services.export_cancel(export_id=export.pk, agent=agent)
    return mcp_tools.export_answer(render_export(export_get_for_agent(agent=agent, export_id=export.pk)))


def _events(request, agent, args):
    """The event feed's own view, called in-process with this request's credentials.

    TODO(lead): call the events selector directly once apps/events has one."""
    view = events_view()
    if view is None:
        raise NotFound("This plane does not serve the event feed.")
    inner = HttpRequest()
    inner.method = "GET"
    inner.path = inner.path_info = "/api/v1/events"
    inner.META = {k: v for k, v in request.META.items() if k in ("HTTP_AUTHORIZATION", "REMOTE_ADDR",
                                                                  "SERVER_NAME", "SERVER_PORT", "HTTP_HOST")}
    query = QueryDict(mutable=True)
    for key in ("after", "wait", "limit"):
        if args.get(key) not in (None, ""):
            query[key] = str(args[key])
    inner.GET = query
    inner.request_id = getattr(request, "request_id", None)
    inner.rate_counted = True  # this call counted once against the agent's rate, at /mcp
    if iscoroutinefunction(view):  # the feed is async: the endpoint awaits it, holding no thread
        return aio.Waiting(wait=functools.partial(view, inner), then=_feed_answer)
    return _feed_answer(view(inner))


def _feed_answer(response):
    try:
        payload = json.loads(response.content)
    except ValueError:
        raise ApplicationError("The event feed did not answer JSON.") from None
    if response.status_code >= 400:
        error = payload.get("error", {}) if isinstance(payload, dict) else {}
        if response.status_code == 400:
            raise InvalidRequest(str(error.get("message", "")) or None,
                                 **{k: v for k, v in error.items() if k not in ("code", "message")})
        raise _ReplayedError(response.status_code, error)
    return payload


class _ReplayedError(ApplicationError):
    def __init__(self, status: int, error: dict):
        self.status = status
        self.code = str(error.get("code", "error"))
        super().__init__(str(error.get("message", "")), **{k: v for k, v in error.items()
                                                              if k not in ("code", "message")})


_HANDLERS = {
    "capabilities": _capabilities,
    "describe_method": _describe,
    "submit_plan": _submit,
    "get_plan": _get,
    "cancel_plan": _cancel,
    "list_plans": _list,
    "start_export": _start_export,
    "get_export": _get_export,
    "cancel_export": _cancel_export,
    "read_events": _events,
}
assert set(_HANDLERS) == set(mcp_tools.TOOL_NAMES), "every shared tool has a handler"  # noqa: S101
