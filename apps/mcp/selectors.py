"""Reads the MCP tools need, over the same selectors as the JSON API."""

from django.urls import Resolver404, resolve

from apps.policy.packs import BUILTIN_PACKS
from apps.policy.selectors import active_grants, custom_pack_patterns, pack_patterns
from apps.portals.models import Portal

EVENTS_PATH = "/api/v1/events"


def capabilities_for(*, agent) -> dict:
    """What `GET /api/v1/capabilities` answers for the agent."""
    custom = custom_pack_patterns()
    portals = []
    for portal in Portal.objects.filter(grants__agent=agent, is_active=True).distinct().order_by("slug"):
        grants = []
        for grant in active_grants(agent=agent, portal=portal):
            builtin = BUILTIN_PACKS.get(grant.pack)
            grants.append({
                "pack": grant.pack,
                "description": builtin.description if builtin else "custom pack",
                "policy": {"read": grant.read_policy, "write": grant.write_policy,
                           "destructive": grant.destructive_policy},
                "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
                "patterns": list(pack_patterns(grant.pack, custom)),
            })
        portals.append({"portal": portal.slug, "name": portal.name, "grants": grants})
    return {"agent": agent.slug, "portals": portals}


def events_view():
    """The view serving the agent event feed, or None while the plane has none. A catch-all
    route (a JSON 404 for any unknown /api/ path) is not a feed: the route must name `events`."""
    try:
        match = resolve(EVENTS_PATH)
    except Resolver404:
        return None
    route = (match.route or "").rstrip("$/").removesuffix("\\Z")
    return match.func if route.endswith("events") else None
