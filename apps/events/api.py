"""`GET /api/v1/events?portal=&after=<cursor>&types=&limit=&wait=N`: the agent feed (thin adapter).

Events of portals the agent holds a grant on, filtered to those its packs may read
(`apps.events.readable`), oldest first ("newest last"). The cursor is the feed sequence of the
last event scanned: pass `next_cursor` back as `after` and nothing is skipped or repeated.
`wait` (<= API_MAX_WAIT_SECONDS) holds the answer until an event arrives.
"""

import re
import time

from django.conf import settings

from apps.agents.auth import authenticate_agent
from apps.agents.ratelimit import check_rate
from apps.core.api import json_endpoint
from apps.core.exceptions import InvalidRequest, NotFound
from apps.plans.schemas import parse_wait

from .parsing import EVENT_NAME
from .selectors import feed_page, feed_portals

MAX_LIMIT = 500
_CURSOR = re.compile(r"[0-9]{1,18}")
POLL_INTERVAL = 0.25


def parse_after(value: str | None) -> int:
    if value in (None, ""):
        return 0
    if not _CURSOR.fullmatch(value):
        raise InvalidRequest("after is a cursor from next_cursor (a whole number).", field="after")
    return int(value)


def parse_types(value: str | None) -> frozenset[str] | None:
    if not value:
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


def render_event(event) -> dict:
    return {
        "cursor": str(event.feed_seq),
        "portal": event.portal.slug,
        "event": event.event,
        "ts": event.ts,
        "source": event.source,
        "data": event.data,
        "additional": event.additional,
        "received_at": event.received_at.isoformat().replace("+00:00", "Z"),
    }


@json_endpoint("GET")
def events_feed(request):
    agent = authenticate_agent(request)
    check_rate(agent)
    slug = request.GET.get("portal") or None
    after = parse_after(request.GET.get("after"))
    types = parse_types(request.GET.get("types"))
    limit = parse_feed_limit(request.GET.get("limit"))
    wait = parse_wait(request.GET.get("wait"), maximum=settings.API_MAX_WAIT_SECONDS)
    portals = feed_portals(agent=agent, slug=slug)
    if slug is not None and not portals:
        raise NotFound(f"No portal {slug!r} is available to this agent.", field="portal")
    deadline = time.monotonic() + wait
    cursor = after
    while True:
        events, cursor = feed_page(agent=agent, portals=portals, after=cursor, types=types, limit=limit)
        remaining = deadline - time.monotonic()
        if events or remaining <= 0:
            break
        time.sleep(min(POLL_INTERVAL, remaining))
    return {"events": [render_event(e) for e in events], "next_cursor": str(cursor)}
