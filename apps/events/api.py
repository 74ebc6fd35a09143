"""`GET /api/v1/events?portal=&after=<cursor>&types=&limit=&wait=N`: the agent feed (thin adapter).

Events of portals the agent holds a grant on, filtered to those its packs may read
(`apps.events.readable`), oldest first ("newest last"). The cursor is the feed sequence of the
last event scanned: pass `next_cursor` back as `after` and nothing is skipped or repeated.
`wait` (<= API_MAX_WAIT_SECONDS) holds the answer until an event arrives (woken when one is processed).
"""

import dataclasses
import re
import time

from django.conf import settings

from apps.agents.auth import authenticate_agent
from apps.agents.ratelimit import check_rate
from apps.core import aio, wakeup
from apps.core.api import json_endpoint, parse_json_body
from apps.core.exceptions import InvalidRequest, NotFound
from apps.plans.schemas import parse_wait

from . import subscriptions as subs
from .parsing import EVENT_NAME
from .selectors import feed_page, feed_portals

MAX_LIMIT = 500
_CURSOR = re.compile(r"[0-9]{1,18}")


def parse_after(value: str | None) -> int:
    if value in (None, ""):
        return 0
    if not _CURSOR.fullmatch(value):
        raise InvalidRequest("after is a cursor from next_cursor (a whole number).", field="after")
    return int(value)


def parse_types(value: str | None) -> frozenset[str] | None:
    if not value or not value.strip():
        return None
    names = [part.strip() for part in value.split(",") if part.strip()]
    if not names or len(names) > 100 or not all(EVENT_NAME.fullmatch(n) for n in names):
        raise InvalidRequest("types is a comma-separated list of event names, e.g. ONCRMLEADADD.", field="types")
    return frozenset(n.upper() for n in names)


def parse_feed_limit(value: str | None) -> int:
    if value in (None, ""):
        return 100
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise InvalidRequest(f"limit is a whole number from 1 to {MAX_LIMIT}.", field="limit")
    return int(value)


def _iso(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def render_event(event) -> dict:
    return {
        "cursor": str(event.feed_seq),
        "portal": event.portal.slug,
        "event": event.event,
        "ts": event.ts,
        "source": event.source,
        "data": event.data,
        "additional": event.additional,
        "received_at": _iso(event.received_at),
    }


@dataclasses.dataclass
class _Feed:
    agent: object
    portals: list
    types: frozenset | None
    limit: int
    wait: int
    cursor: int


@json_endpoint("GET")
async def events_feed(request):
    """Async: the query runs as sync code; while nothing has arrived the wait is awaited on the
    portals' wake-up (`apps.core.wakeup`, signalled when an event is processed) and holds no
    thread and no database connection."""
    feed = await aio.run_sync(_feed_request, request)
    events, cursor = await aio.run_sync(_page, feed)
    if not events and feed.wait:
        deadline = wakeup.wait_deadline(feed.wait)
        with wakeup.subscribe([wakeup.events_key(p.pk) for p in feed.portals]) as sub:
            while True:
                events, cursor = await aio.run_sync(_page, feed)  # after subscribing: nothing missed
                remaining = deadline - time.monotonic()
                if events or remaining <= 0:
                    break
                await aio.park()
                await sub.wait(min(remaining, wakeup.fallback_seconds()))
    return await aio.run_sync(_render_feed, events, cursor)


def _feed_request(request) -> _Feed:
    agent = _agent(request)
    slug = request.GET.get("portal") or None
    after = parse_after(request.GET.get("after"))
    types = parse_types(request.GET.get("types"))
    limit = parse_feed_limit(request.GET.get("limit"))
    wait = parse_wait(request.GET.get("wait"), maximum=settings.API_MAX_WAIT_SECONDS)
    portals = feed_portals(agent=agent, slug=slug)
    if slug is not None and not portals:
        raise NotFound(f"No portal {slug!r} is available to this agent.", field="portal")
    return _Feed(agent=agent, portals=list(portals), types=types, limit=limit, wait=wait, cursor=after)


def _page(feed: _Feed):
    """One page after the feed's cursor; the cursor moves past what was scanned (shown or not).
    An empty page that will be waited on lets go of the database connection first."""
    events, feed.cursor = feed_page(agent=feed.agent, portals=feed.portals, after=feed.cursor, types=feed.types,
                                    limit=feed.limit)
    if not events and feed.wait:
        aio.release_connections()
    return events, feed.cursor


def _render_feed(events, cursor) -> dict:
    return {"events": [render_event(e) for e in events], "next_cursor": str(cursor)}


def _agent(request):
    agent = authenticate_agent(request)
    if not getattr(request, "rate_counted", False):  # MCP's read_events, counted by /mcp already
        check_rate(agent)
    return agent


def render_subscription(sub, secret: str | None = None) -> dict:
    out = {"id": str(sub.pk), "portal": sub.portal.slug if sub.portal_id else None,
           "types": sorted(sub.type_set()), "callback_url": sub.callback_url,
           "created_at": _iso(sub.created_at), "last_delivery_at": _iso(sub.last_delivery_at),
           "last_error": sub.last_error}
    if secret is not None:
        out["secret"] = secret  # shown once
    return out


@json_endpoint("GET", "POST", "DELETE")
def subscriptions(request):
    """GET: the agent's active subscriptions. POST {callback_url, portal?, types?}: subscribe; the
    answer carries the HMAC secret, once. DELETE ?id=<id>: unsubscribe."""
    agent = _agent(request)
    if request.method == "GET":
        return {"subscriptions": [render_subscription(s) for s in subs.subscriptions_for_agent(agent)]}
    if request.method == "DELETE":
        subs.subscription_delete(agent=agent, subscription_id=request.GET.get("id", ""))
        return {"deleted": True}
    body = parse_json_body(request)
    unknown = set(body) - {"callback_url", "portal", "types"}
    if unknown:
        raise InvalidRequest(f"Unknown field {sorted(unknown)[0]!r}.", field=sorted(unknown)[0])
    portal = None
    if body.get("portal") is not None:
        if not isinstance(body["portal"], str):
            raise InvalidRequest("portal is a portal slug.", field="portal")
        portals = feed_portals(agent=agent, slug=body["portal"])
        if not portals:
            raise NotFound(f"No portal {body['portal']!r} is available to this agent.", field="portal")
        portal = portals[0]
    types = body.get("types")
    if types is not None:
        if (not isinstance(types, list) or len(types) > 100
                or not all(isinstance(t, str) and EVENT_NAME.fullmatch(t) for t in types)):
            raise InvalidRequest("types is a list of event codes, e.g. [\"ONCRMLEADADD\"].", field="types")
        types = frozenset(t.upper() for t in types) or None
    sub, secret = subs.subscription_create(agent=agent, callback_url=body.get("callback_url"), portal=portal,
                                           types=types)
    return render_subscription(sub, secret), 201
