"""Event handler bindings on a portal, through the transport (FACTS §9): `event.get` lists,
`event.bind` binds online (our handler URL) or offline (no handler, with `auth_connector` so our
own writes are not queued back to us), `event.unbind` removes. Each change is audited."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.urls import reverse

from apps.audit import registry as audit_events
from apps.audit.services import audit_record
from apps.bitrix.client import BitrixClient
from apps.core.exceptions import InvalidRequest
from apps.portals.models import Portal

from .parsing import EVENT_NAME
from .services import event_settings_get, require_app_admin_credential


def handler_urls(portal: Portal) -> tuple[str, str]:
    """(app handler URL, this portal's outgoing-webhook handler URL), absolute when
    EVENTS_PUBLIC_BASE_URL is set."""
    base = (settings.EVENTS_PUBLIC_BASE_URL or "").rstrip("/")
    return (base + reverse("events-inbound"),
            base + reverse("events-inbound-portal", kwargs={"slug": portal.slug}))


def _event_name(event: str) -> str:
    event = (event or "").strip()
    if not EVENT_NAME.fullmatch(event):
        raise InvalidRequest("The event is a Bitrix24 event code such as ONCRMLEADADD.", field="event")
    return event.upper()


def bindings_list(*, portal: Portal) -> list[dict]:
    require_app_admin_credential(portal)
    result = BitrixClient(portal).call("event.get", {}).result
    rows = result if isinstance(result, list) else []
    return [{"event": str(r.get("event", "")), "handler": str(r.get("handler", "") or ""),
             "auth_type": str(r.get("auth_type", "") or ""), "offline": str(r.get("offline", "0")) in ("1", "True")}
            for r in rows if isinstance(r, dict)]


def binding_add(*, portal: Portal, event: str, offline: bool = False, acting_user=None) -> None:
    require_app_admin_credential(portal)
    event = _event_name(event)
    params: dict = {"event": event}
    if offline:
        params["event_type"] = "offline"
    else:
        app_url, _ = handler_urls(portal)
        if not app_url.startswith(("https://", "http://")):
            raise InvalidRequest("Set EVENTS_PUBLIC_BASE_URL so the portal can reach our handler.", field="event")
        params["handler"] = app_url
    connector = event_settings_get(portal=portal).auth_connector
    if connector:
        params["auth_connector"] = connector
    BitrixClient(portal).call("event.bind", params)
    with transaction.atomic():
        audit_record(action=audit_events.EVENTS_BINDING_CHANGED, actor=acting_user, portal=portal, data={
            "op": "bind", "event": event, "event_type": "offline" if offline else "online",
            "handler": params.get("handler", ""), "auth_connector": connector})


def binding_remove(*, portal: Portal, event: str, handler: str = "", offline: bool = False, auth_type: str = "",
                   acting_user=None) -> int:
    require_app_admin_credential(portal)
    event = _event_name(event)
    params: dict = {"event": event, "event_type": "offline" if offline else "online"}
    if handler and not offline:
        params["handler"] = handler
    params["auth_type"] = auth_type if auth_type.isdigit() else "0"
    result = BitrixClient(portal).call("event.unbind", params).result
    removed = result.get("count", 0) if isinstance(result, dict) else result
    try:
        removed = int(removed)
    except (TypeError, ValueError):
        removed = 0
    with transaction.atomic():
        audit_record(action=audit_events.EVENTS_BINDING_CHANGED, actor=acting_user, portal=portal, data={
            "op": "unbind", "event": event, "event_type": params["event_type"], "handler": handler,
            "removed": removed})
    return removed
