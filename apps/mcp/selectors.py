"""Reads the MCP tools need, over the same selectors as the JSON API."""

from django.urls import Resolver404, resolve

from apps.policy.selectors import agent_capabilities

EVENTS_PATH = "/api/v1/events"


def capabilities_for(*, agent) -> dict:
    """What `GET /api/v1/capabilities` answers for the agent."""
    return agent_capabilities(agent=agent)


def events_view():
    """The view serving the agent event feed, or None while the plane has none. A catch-all
    route (a JSON 404 for any unknown /api/ path) is not a feed: the route must name `events`."""
    try:
        match = resolve(EVENTS_PATH)
    except Resolver404:
        return None
    route = (match.route or "").rstrip("$/").removesuffix("\\Z")
    return match.func if route.endswith("events") else None
