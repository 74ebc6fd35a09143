"""What processing an event means, by event name. Runs inside `services.event_process` (a
savepoint under the event's row lock): raising counts a failed attempt.

Only data the portal registered with us is trusted: `auth[domain]`, `client_endpoint` and
`server_endpoint` of a delivery are never stored and never used, so an event cannot redirect a
call (the drain and the bindings use the registered portal's `base_url`).
"""

from __future__ import annotations

from collections.abc import Callable

from .models import EventSettings, InboundEvent

Handler = Callable[[InboundEvent], None]


def _uninstalled(event: InboundEvent) -> None:
    from .services import portal_app_uninstalled

    portal_app_uninstalled(portal=event.portal, event_id=event.pk)


def _offline_waiting(event: InboundEvent) -> None:
    """ONOFFLINEEVENT: new records wait in the portal's offline queue; drain it now."""
    if EventSettings.objects.filter(portal_id=event.portal_id, offline_events=True).exists():
        from .tasks import drain_offline_queue

        drain_offline_queue.delay_on_commit(event.portal_id)


HANDLERS: dict[str, Handler] = {
    "ONAPPUNINSTALL": _uninstalled,
    "ONOFFLINEEVENT": _offline_waiting,
}


def _publish(event: InboundEvent) -> None:
    """Every other event: processing publishes it to the agent feed (the feed sequence is given
    by the caller once this returns)."""


def handle(event: InboundEvent) -> None:
    HANDLERS.get(event.event, _publish)(event)
