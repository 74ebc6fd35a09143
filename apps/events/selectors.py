"""Reads for the agent feed and the admin."""

from __future__ import annotations

from apps.policy.selectors import grant_views_for
from apps.portals.models import Portal

from .choices import EventStatus
from .models import InboundEvent
from .readable import may_read


def feed_portals(*, agent, slug: str | None = None) -> list[Portal]:
    """Active portals the agent holds a grant on (optionally the one named)."""
    qs = Portal.objects.filter(is_active=True, grants__agent=agent).distinct().order_by("slug")
    if slug is not None:
        qs = qs.filter(slug=slug)
    return list(qs)


def feed_page(*, agent, portals: list[Portal], after: int, types: frozenset[str] | None, limit: int,
              scan: int = 1000) -> tuple[list[InboundEvent], int]:
    """Processed events after `after` (feed sequence), oldest first, that the agent's packs may
    read on their portal. Returns (events, cursor): the cursor moves past every event scanned,
    shown or not, so a filtered-out event is never scanned again."""
    grants = {p.pk: grant_views_for(agent=agent, portal=p) for p in portals}
    if not grants:
        return [], after
    qs = InboundEvent.objects.filter(
        status=EventStatus.PROCESSED, feed_seq__gt=after, portal_id__in=list(grants),
    ).select_related("portal").order_by("feed_seq")
    if types:
        qs = qs.filter(event__in=sorted(types))
    shown: list[InboundEvent] = []
    cursor = after
    readable: dict[tuple[int, str], bool] = {}
    for event in qs[:scan]:
        key = (event.portal_id, event.event)
        if key not in readable:
            readable[key] = may_read(grants[event.portal_id], event.event)
        if readable[key]:
            shown.append(event)
        cursor = event.feed_seq
        if len(shown) >= limit:
            break
    return shown, cursor
