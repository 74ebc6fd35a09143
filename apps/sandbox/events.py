"""Events of the sandbox portal (FACTS §9, §11).

Methods: `event.bind`, `event.unbind`, `event.get` (application context only: a webhook gets
`WRONG_AUTH_TYPE`), `events`, and the offline queue `event.offline.get|clear|error|list` (app
auth and an admin user, otherwise `ACCESS_DENIED`).

Emission: when a lead, deal, contact or task changes, `record_changed` POSTs the event
(`application/x-www-form-urlencoded`, PHP-style keys) to every online handler bound to it, after
the transaction commits, once, without retries (a failed delivery is lost, as documented), and
puts one record per object into the offline queue of every app bound offline (the last change
wins; a write that passes the handler's own `auth_connector` is not queued back). Apps bound to
`ONOFFLINEEVENT` are told when new records appear (at most once per `options.minTimeout` s).
Outgoing webhooks are handlers without an app (`client_id=""`): their `auth` carries no tokens.
"""

import hashlib
import logging
import math
import re
import secrets
import threading
from datetime import datetime
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.db import transaction

from . import clock
from .errors import SandboxError
from .event_names import EVENT_NAMES
from .methods import Ctx, Outcome, _param, iso, parse_v2_filter, parse_v2_order
from .models import SandboxEventHandler, SandboxOAuthClient, SandboxOfflineEvent, SandboxPortal
from .params import php_build_query
from .records import PAGE_SIZE
from .tokens import application_token, endpoints, issue_token
from .tx import portal_atomic

logger = logging.getLogger(__name__)

_DYNAMIC_RE = re.compile(r"ONCRMDYNAMICITEM(ADD|UPDATE|DELETE)_[0-9]{1,9}")
DELIVERY_TIMEOUT = 5.0
RESERVATION_LIFETIME = 30 * 86400  # a reserved batch is kept up to 30 days, then dropped (FACTS §11)
USER_AGENT = "Bitrix24 Webhook Engine (sandbox)"


def _access_denied(description: str = "Access denied!") -> SandboxError:
    return SandboxError("ACCESS_DENIED", description, status=403)


def known_event(name: str) -> bool:
    return name in EVENT_NAMES or bool(_DYNAMIC_RE.fullmatch(name))


def _event_name(params: dict) -> str:
    raw = _param(params, "event")
    return raw.strip().upper() if isinstance(raw, str) else ""


def _offline(params: dict) -> bool:
    raw = _param(params, "event_type")
    return isinstance(raw, str) and raw.strip().lower() == "offline"


def _auth_type(params: dict) -> int | None:
    raw = _param(params, "auth_type")
    if raw is None:
        return None
    if raw in ("", 0, "0"):
        return 0
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise SandboxError("ERROR_ARGUMENT", "auth_type must be a user ID", status=400) from None
    return value if value > 0 else 0


def valid_handler_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and len(url) <= 2048


# ---------------------------------------------------------------------------- methods


def event_bind(ctx: Ctx, params: dict) -> Outcome:
    name = _event_name(params)
    if not known_event(name):
        raise SandboxError("ERROR_EVENT_NOT_FOUND", "Event not found", status=400)
    offline = _offline(params)
    if offline and not ctx.is_admin:
        raise _access_denied("Access denied! Offline events binding requires administrator access rights")
    auth_type = _auth_type(params) or 0
    if auth_type not in (0, ctx.user_id) and not ctx.is_admin:
        raise _access_denied("Access denied! Event binding with AUTH_TYPE requires administrator access rights")
    handler = _param(params, "handler")
    handler = handler.strip() if isinstance(handler, str) else ""
    if not offline and not valid_handler_url(handler):
        raise SandboxError("ERROR_ARGUMENT", "Argument 'handler' is null or not an http(s) URL", status=400)
    connector = _param(params, "auth_connector")
    connector = connector.strip()[:128] if isinstance(connector, str) else ""
    options = _param(params, "options")
    options = options if isinstance(options, dict) else {}
    with portal_atomic():
        SandboxPortal.objects.select_for_update().filter(pk=ctx.portal.pk).first()
        exists = SandboxEventHandler.objects.filter(portal=ctx.portal, client_id=ctx.client_id, event=name,
                                                    handler="" if offline else handler, auth_type=auth_type,
                                                    offline=offline).exists()
        if exists:
            raise SandboxError("ERROR_HANDLER_ALREADY_EXIST", "Handler already exists!", status=400)
        SandboxEventHandler.objects.create(
            portal=ctx.portal, client_id=ctx.client_id, event=name, handler="" if offline else handler,
            auth_type=auth_type, offline=offline, auth_connector=connector,
            options={k: v for k, v in options.items() if not str(k).startswith("_")}, bound_by=ctx.user_id,
            created_at=clock.now())
    return Outcome(True)


def event_unbind(ctx: Ctx, params: dict) -> Outcome:
    offline = _offline(params)
    if offline and not ctx.is_admin:
        raise _access_denied("Access denied! Offline events unbinding requires administrator access rights")
    auth_type = _auth_type(params)
    if auth_type not in (None, 0, ctx.user_id) and not ctx.is_admin:
        raise _access_denied("Access denied! Event unbinding with AUTH_TYPE requires administrator access rights")
    rows = SandboxEventHandler.objects.filter(portal=ctx.portal, client_id=ctx.client_id, offline=offline)
    name = _event_name(params)
    if name:
        rows = rows.filter(event=name)
    handler = _param(params, "handler")
    if isinstance(handler, str) and handler.strip() and not offline:
        rows = rows.filter(handler=handler.strip())
    if auth_type is not None:
        rows = rows.filter(auth_type=auth_type)
    count, _ = rows.delete()
    return Outcome({"count": count})


def event_get(ctx: Ctx, params: dict) -> Outcome:
    rows = SandboxEventHandler.objects.filter(portal=ctx.portal, client_id=ctx.client_id).order_by("pk")
    if not ctx.is_admin:
        rows = rows.filter(bound_by=ctx.user_id)
    out = []
    for row in rows:
        item = {"event": row.event, "handler": row.handler, "auth_type": str(row.auth_type),
                "offline": int(row.offline)}
        if row.offline and row.auth_connector:
            item["connector_id"] = row.auth_connector
        out.append(item)
    return Outcome(out)


def _event_scope(name: str) -> str:
    if name.startswith("ONCRM"):
        return "crm"
    if name.startswith("ONTASK"):
        return "task"
    if name.startswith("ONIMBOT"):
        return "imbot"
    if name.startswith("ONUSER"):
        return "user"
    return "basic"


def events_list(ctx: Ctx, params: dict) -> Outcome:
    scope = _param(params, "SCOPE")
    if isinstance(scope, str) and scope.strip():
        return Outcome([n for n in EVENT_NAMES if _event_scope(n) == scope.strip().lower()])
    full = str(_param(params, "FULL") or "").strip().lower() in ("1", "true", "y")
    if full or ctx.scopes is None:
        return Outcome(list(EVENT_NAMES))
    return Outcome([n for n in EVENT_NAMES if _event_scope(n) == "basic" or _event_scope(n) in ctx.scopes])


# ---------------------------------------------------------------------------- offline queue

_OFFLINE_FIELDS = {"ID": "pk", "TIMESTAMP_X": "timestamp", "EVENT_NAME": "event_name", "MESSAGE_ID": "message_id",
                   "PROCESS_ID": "process_id", "ERROR": "error"}
_LOOKUPS = {"=": "exact", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte", "in": "in", "like": "icontains"}


def _offline_caller(ctx: Ctx) -> None:
    if ctx.client_id is None or not ctx.is_admin:
        raise _access_denied()


def _connector(params: dict) -> str:
    raw = _param(params, "auth_connector")
    return raw.strip() if isinstance(raw, str) else ""


def _offline_value(field: str, value):
    """A filter value as the column holds it; None when it cannot match anything."""
    if isinstance(value, list):
        values = [_offline_value(field, v) for v in value]
        return [v for v in values if v is not None]
    if isinstance(value, dict | list):
        return None
    if field == "ID":
        text = str(value).strip()
        return int(text) if text.isdigit() and len(text) < 19 else None
    if field == "ERROR":
        return str(value).strip().lower() in ("1", "y", "true")
    if field == "TIMESTAMP_X":
        return _as_timestamp(value)
    return "" if value is None else str(value)


def _offline_filter(qs, raw, allowed: tuple[str, ...]):
    for cond in parse_v2_filter(raw):
        column = _OFFLINE_FIELDS.get(cond.field)
        if column is None or cond.field not in allowed:
            continue
        value = _offline_value(cond.field, cond.value)
        if value is None:
            if cond.op not in ("!=", "not_in"):
                qs = qs.none()
            continue
        lookup = _LOOKUPS.get(cond.op)
        if cond.op in ("!=", "not_in"):
            qs = qs.exclude(**{f"{column}__in" if isinstance(value, list) else column: value})
        elif lookup is not None:
            if lookup == "in" and not isinstance(value, list):
                value = [value]
            elif lookup != "in" and isinstance(value, list):
                lookup = "in"
            qs = qs.filter(**{f"{column}__{lookup}": value})
    return qs


def _as_timestamp(value) -> float:
    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        try:
            number = float(str(value))
        except ValueError:
            return 0.0
        return number if math.isfinite(number) else 0.0


def _offline_order(raw, default: str):
    order = parse_v2_order(raw) or [(default, False)]
    out = []
    for field, descending in order:
        column = _OFFLINE_FIELDS.get(field)
        if column is not None:
            out.append(f"-{column}" if descending else column)
    return [*out, "pk"]


def _offline_view(row: SandboxOfflineEvent, *, listing: bool = False) -> dict:
    item = {"ID": str(row.pk), "TIMESTAMP_X": iso(row.timestamp), "EVENT_NAME": row.event_name,
            "EVENT_DATA": row.event_data if row.event_data is not None else False,
            "EVENT_ADDITIONAL": row.event_additional if row.event_additional is not None else False,
            "MESSAGE_ID": row.message_id}
    if listing:
        item.update(PROCESS_ID=row.process_id, ERROR="1" if row.error else "0")
    return item


def _truthy(value, default: bool) -> bool:
    if value is None or value == "":
        return default
    return str(value).strip().lower() in ("1", "y", "true")


def offline_get(ctx: Ctx, params: dict) -> Outcome:
    _offline_caller(ctx)
    clear = _truthy(_param(params, "clear"), True)
    error = _truthy(_param(params, "error"), False)
    try:
        limit = int(str(_param(params, "limit") or 50).strip())
    except ValueError:
        limit = 50
    limit = max(1, min(limit, 1000))
    process_id = _param(params, "process_id")
    process_id = process_id.strip() if isinstance(process_id, str) else ""
    with portal_atomic():
        # The portal row lock makes parallel readers take batches that do not overlap.
        SandboxPortal.objects.select_for_update().filter(pk=ctx.portal.pk).first()
        SandboxOfflineEvent.objects.filter(portal=ctx.portal).exclude(process_id="").filter(
            reserved_at__lt=clock.now() - RESERVATION_LIFETIME).delete()
        qs = SandboxOfflineEvent.objects.filter(portal=ctx.portal, client_id=ctx.client_id,
                                                auth_connector=_connector(params), error=error)
        qs = qs.filter(process_id=process_id) if process_id else qs.filter(process_id="")
        qs = _offline_filter(qs, _param(params, "filter"), ("ID", "TIMESTAMP_X", "EVENT_NAME", "MESSAGE_ID"))
        rows = list(qs.order_by(*_offline_order(_param(params, "order"), "TIMESTAMP_X"))[:limit])
        events = [_offline_view(r) for r in rows]
        ids = [r.pk for r in rows]
        if clear:
            SandboxOfflineEvent.objects.filter(pk__in=ids).delete()
            answer_pid = None
        else:
            answer_pid = process_id or secrets.token_hex(16)
            reserved = SandboxOfflineEvent.objects.filter(pk__in=ids)
            if process_id:
                reserved.update(process_id=answer_pid)
            else:
                reserved.update(process_id=answer_pid, reserved_at=clock.now())
    return Outcome({"process_id": answer_pid, "events": events})


def _process_id(params: dict) -> str:
    raw = _param(params, "process_id")
    if not isinstance(raw, str) or not raw.strip():
        raise SandboxError("ERROR_ARGUMENT", "Argument 'process_id' is null or empty", status=400)
    return raw.strip()


def _str_list(raw) -> list[str] | None:
    if raw is None or raw == "":
        return None
    if isinstance(raw, dict):
        raw = list(raw.values())
    if not isinstance(raw, list):
        raw = [raw]
    return [str(v) for v in raw if isinstance(v, str | int) and not isinstance(v, bool)]


def offline_clear(ctx: Ctx, params: dict) -> Outcome:
    _offline_caller(ctx)
    process_id = _process_id(params)
    qs = SandboxOfflineEvent.objects.filter(portal=ctx.portal, client_id=ctx.client_id, process_id=process_id)
    ids = _str_list(_param(params, "id"))
    if ids is not None:
        qs = qs.filter(pk__in=[int(i) for i in ids if i.isdigit() and len(i) < 19])
    else:
        message_ids = _str_list(_param(params, "message_id"))
        if message_ids is not None:
            qs = qs.filter(message_id__in=message_ids)
    qs.delete()
    return Outcome(True)


def offline_error(ctx: Ctx, params: dict) -> Outcome:
    _offline_caller(ctx)
    process_id = _process_id(params)
    message_ids = _str_list(_param(params, "message_id")) or []
    SandboxOfflineEvent.objects.filter(portal=ctx.portal, client_id=ctx.client_id, process_id=process_id,
                                       message_id__in=message_ids).update(error=True, process_id="")
    return Outcome(True)


def offline_list(ctx: Ctx, params: dict) -> Outcome:
    _offline_caller(ctx)
    from .methods import parse_start

    offset, count = parse_start(params)
    qs = SandboxOfflineEvent.objects.filter(portal=ctx.portal, client_id=ctx.client_id,
                                            auth_connector=_connector(params))
    qs = _offline_filter(qs, _param(params, "filter"), tuple(_OFFLINE_FIELDS))
    total = qs.count()
    rows = list(qs.order_by(*_offline_order(_param(params, "order"), "ID"))[offset: offset + PAGE_SIZE])
    nxt = offset + PAGE_SIZE if count and offset + PAGE_SIZE < total else None
    return Outcome([_offline_view(r, listing=True) for r in rows], total=total if count else None, next=nxt)


# ---------------------------------------------------------------------------- emission


def base_url() -> str:
    return str(settings.SANDBOX_BASE_URL).rstrip("/")


def post_form(url: str, body: str) -> None:
    """Deliver one event: one POST, no redirects followed, no retries (FACTS §9)."""
    try:
        requests.post(url, data=body.encode(), timeout=DELIVERY_TIMEOUT, allow_redirects=False,
                      headers={"Content-Type": "application/x-www-form-urlencoded", "User-Agent": USER_AGENT})
    except requests.RequestException as exc:
        logger.info("sandbox event delivery to %s failed: %s", urlsplit(url).netloc, exc.__class__.__name__)


def send_after_commit(url: str, body: str) -> None:
    def send() -> None:
        threading.Thread(target=lambda: post_form(url, body), daemon=True, name="sandbox-event").start()

    transaction.on_commit(send)


def _auth(portal: SandboxPortal, handler: SandboxEventHandler | None, client: SandboxOAuthClient | None,
          user_id: int, *, refresh: bool = True) -> dict:
    """The `auth` block: an app's tokens and endpoints, or an outgoing webhook's (no tokens)."""
    urls = endpoints(portal=portal, base_url=base_url())
    if client is None:
        subject = f"hook:{handler.pk}" if handler is not None else "hook"
        return {"domain": urls["domain"], "client_endpoint": urls["client_endpoint"],
                "server_endpoint": urls["server_endpoint"], "member_id": portal.member_id,
                "application_token": application_token(portal=portal, subject=subject)}
    pair = issue_token(portal, client, user_id, portal.token_lifetime, base_url())
    auth = {"access_token": pair["access_token"], "expires_in": pair["expires_in"], "scope": pair["scope"],
            "domain": urls["domain"], "server_endpoint": urls["server_endpoint"], "status": client.status,
            "client_endpoint": urls["client_endpoint"], "member_id": portal.member_id}
    if refresh:
        auth["refresh_token"] = pair["refresh_token"]
    auth["application_token"] = application_token(portal=portal, subject=client.client_id)
    return auth


def delivery_body(*, portal: SandboxPortal, handler: SandboxEventHandler | None, event: str, data: dict | None,
                  user_id: int, client: SandboxOAuthClient | None = None) -> str:
    """The form body Bitrix24's queue server POSTs for one event to one handler."""
    if client is None and handler is not None and handler.client_id:
        client = SandboxOAuthClient.objects.filter(client_id=handler.client_id).first()
    payload: dict = {"event": event}
    if handler is not None and event != "ONOFFLINEEVENT":  # the documented ONOFFLINEEVENT has none
        payload["event_handler_id"] = str(handler.pk)
    if data:
        payload["data"] = data
    payload["ts"] = str(int(clock.now()))
    user = handler.auth_type if handler is not None and handler.auth_type else user_id
    payload["auth"] = _auth(portal, handler, client, user)
    return php_build_query(payload)


def _message_id(entity: str, record_id: int) -> str:
    return hashlib.md5(f"{entity}:{record_id}".encode(), usedforsecurity=False).hexdigest()


CRM_EVENTS = {"lead": "ONCRMLEAD", "deal": "ONCRMDEAL", "contact": "ONCRMCONTACT"}
VERBS = {"add": "ADD", "update": "UPDATE", "delete": "DELETE"}


def _data(entity: str, verb: str, record_id: int) -> dict:
    if entity == "task":
        after = "undefined" if verb == "delete" else {"ID": str(record_id)}
        before = "undefined" if verb == "add" else {"ID": str(record_id)}
        return {"FIELDS_BEFORE": before, "FIELDS_AFTER": after, "IS_ACCESSIBLE_BEFORE": "N" if verb == "add" else "Y",
                "IS_ACCESSIBLE_AFTER": "undefined" if verb == "delete" else "Y"}
    return {"FIELDS": {"ID": str(record_id)}}


def record_changed(ctx: Ctx, entity: str, verb: str, record_id: int) -> None:
    """Tell bound handlers that a lead, deal, contact or task was added, updated or deleted."""
    if verb not in VERBS:
        return
    if entity.startswith("dynamic_"):
        event = f"ONCRMDYNAMICITEM{VERBS[verb]}_{entity[len('dynamic_'):]}"
    else:
        prefix = "ONTASK" if entity == "task" else CRM_EVENTS.get(entity)
        if prefix is None:
            return
        event = prefix + VERBS[verb]
    handlers = list(SandboxEventHandler.objects.filter(portal=ctx.portal, event=event))
    if not handlers:
        return
    data = _data(entity, verb, record_id)
    queued_for: set[str] = set()
    for handler in handlers:
        if handler.offline:
            if handler.auth_connector and handler.auth_connector == ctx.auth_connector:
                continue  # the app's own write, marked with its auth_connector: no echo
            _enqueue(ctx, handler, event, data, _message_id(entity, record_id))
            queued_for.add(handler.client_id)
        else:
            body = delivery_body(portal=ctx.portal, handler=handler, event=event, data=data, user_id=ctx.user_id)
            send_after_commit(handler.handler, body)
    for client_id in queued_for:
        _notify_offline(ctx, client_id)


def _enqueue(ctx: Ctx, handler: SandboxEventHandler, event: str, data: dict, message_id: str) -> None:
    """One record per object: an unreserved record of the same object takes the last change."""
    with portal_atomic():
        SandboxPortal.objects.select_for_update().filter(pk=ctx.portal.pk).first()
        row = SandboxOfflineEvent.objects.filter(portal=ctx.portal, client_id=handler.client_id,
                                                 auth_connector=handler.auth_connector, message_id=message_id,
                                                 process_id="", error=False).first()
        if row is not None:
            row.event_name, row.event_data, row.timestamp = event, data, clock.now()
            row.save(update_fields=["event_name", "event_data", "timestamp"])
            return
        SandboxOfflineEvent.objects.create(portal=ctx.portal, client_id=handler.client_id, event_name=event,
                                           event_data=data, event_additional=None, message_id=message_id,
                                           auth_connector=handler.auth_connector, timestamp=clock.now())


def _notify_offline(ctx: Ctx, client_id: str) -> None:
    """ONOFFLINEEVENT to the app's online handlers, at most once per `options.minTimeout` s."""
    now = clock.now()
    for handler in SandboxEventHandler.objects.filter(portal=ctx.portal, client_id=client_id,
                                                      event="ONOFFLINEEVENT", offline=False):
        options = handler.options if isinstance(handler.options, dict) else {}
        try:
            min_timeout = float(options.get("minTimeout", 1))
        except (TypeError, ValueError):
            min_timeout = 1.0
        last = options.get("_notified_at")
        if isinstance(last, int | float) and min_timeout > 0 and now - last < min_timeout:
            continue
        handler.options = {**options, "_notified_at": now}
        handler.save(update_fields=["options"])
        body = delivery_body(portal=ctx.portal, handler=handler, event="ONOFFLINEEVENT", data=None,
                             user_id=ctx.user_id)
        send_after_commit(handler.handler, body)


def app_event(*, portal: SandboxPortal, client: SandboxOAuthClient, url: str, event: str, data: dict,
              user_id: int = 1, tokens: bool = True) -> str:
    """Build and send an application lifecycle event (ONAPPINSTALL, ONAPPUPDATE,
    ONAPPMETHODCONFIRM) to `url`; returns the form body sent."""
    payload: dict = {"event": event, "data": data, "ts": str(int(clock.now()))}
    if tokens:
        pair = issue_token(portal, client, user_id, portal.token_lifetime, base_url())
        urls = endpoints(portal=portal, base_url=base_url())
        payload["auth"] = {"domain": urls["domain"], "scope": pair["scope"], "access_token": pair["access_token"],
                           "refresh_token": pair["refresh_token"], "expires_in": pair["expires_in"],
                           "server_endpoint": urls["server_endpoint"], "status": client.status,
                           "client_endpoint": urls["client_endpoint"], "member_id": portal.member_id,
                           "application_token": application_token(portal=portal, subject=client.client_id)}
    else:
        urls = endpoints(portal=portal, base_url=base_url())
        payload["auth"] = {"domain": urls["domain"], "client_endpoint": urls["client_endpoint"],
                           "server_endpoint": urls["server_endpoint"], "member_id": portal.member_id,
                           "application_token": application_token(portal=portal, subject=client.client_id)}
    body = php_build_query(payload)
    send_after_commit(url, body)
    return body
