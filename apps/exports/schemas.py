"""Parse an export request and render an export (JSON)."""

import datetime
import re
from dataclasses import dataclass

from apps.core.canonical import sha256_hex
from apps.core.exceptions import InvalidRequest
from apps.plans.idempotency import validate_key

from .choices import ExportFormat
from .models import Export
from .selectors import export_file_ready, export_progress

FIELDS = {"portal", "method", "select", "filter", "order", "format", "reason", "idempotency_key"}
MAX_SELECT = 500
_SLUG = re.compile(r"[-a-zA-Z0-9_]{1,64}")


@dataclass(frozen=True)
class ExportRequest:
    portal: str
    method: str
    select: list
    filter: dict
    order: dict
    format: str
    reason: str
    idempotency_key: str | None
    request_hash: str


def parse_export(body: dict, *, header_key: str | None) -> ExportRequest:
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        raise InvalidRequest(f"Unknown field {unknown[0]!r}; an export takes {', '.join(sorted(FIELDS))}.",
                             field=unknown[0])
    portal = body.get("portal")
    if not isinstance(portal, str) or not _SLUG.fullmatch(portal):
        raise InvalidRequest("portal is the slug of a portal (letters, digits, - and _).", field="portal")
    method = body.get("method")
    if not isinstance(method, str) or not method.strip():
        raise InvalidRequest("method is the list method to export, e.g. crm.lead.list.", field="method")
    select = body.get("select", [])
    if not isinstance(select, list) or not all(isinstance(s, str) and s for s in select):
        raise InvalidRequest("select is a list of field names.", field="select")
    if len(select) > MAX_SELECT:
        raise InvalidRequest(f"select names at most {MAX_SELECT} fields.", field="select")
    filter_ = body.get("filter", {})
    if not isinstance(filter_, dict):
        raise InvalidRequest("filter is an object, e.g. {\">DATE_CREATE\": \"2024-01-01\"}.", field="filter")
    order = body.get("order", {})
    if not isinstance(order, dict) or not all(v in ("ASC", "DESC", "asc", "desc") for v in order.values()):
        raise InvalidRequest("order is an object of field → \"ASC\" or \"DESC\".", field="order")
    fmt = body.get("format", ExportFormat.JSONL)
    if fmt not in ExportFormat.values:
        raise InvalidRequest("format is jsonl or csv.", field="format")
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 2000:
        raise InvalidRequest("reason is a string of at most 2000 characters.", field="reason")
    if header_key is not None and "," in header_key:
        raise InvalidRequest("Send one Idempotency-Key header; a key never contains a comma.",
                             field="Idempotency-Key")
    body_key = body.get("idempotency_key")
    if "idempotency_key" in body and not isinstance(body_key, str):
        raise InvalidRequest("An idempotency key is 1–255 printable ASCII characters.", field="idempotency_key")
    if header_key is not None and body_key is not None and header_key != body_key:
        raise InvalidRequest("The Idempotency-Key header and idempotency_key differ.", field="idempotency_key")
    key = header_key if header_key is not None else body_key
    if key is not None:
        validate_key(key)
    hashed = {"export": {k: v for k, v in body.items() if k != "idempotency_key"}}
    return ExportRequest(portal=portal, method=method, select=list(select), filter=filter_,
                         order=order, format=fmt, reason=reason, idempotency_key=key,
                         request_hash=sha256_hex(hashed))


def _iso(value: datetime.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def render_export(export: Export) -> dict:
    ready = export_file_ready(export)
    return {
        "id": str(export.pk),
        "status": export.status,
        "portal": export.portal.slug,
        "method": export.method,
        "select": export.select,
        "filter": export.filter,
        "order": export.order,
        "format": export.format,
        "plan_id": str(export.plan_id),
        "plan_status": export.plan.status,
        "strategy": export.strategy or None,
        "progress": export_progress(export),
        "file": {
            "ready": ready,
            "url": f"/api/v1/exports/{export.pk}/file" if ready else None,
            "bytes": export.file_bytes,
            "removed_at": _iso(export.file_removed_at),
        },
        "created_at": _iso(export.created_at),
        "started_at": _iso(export.started_at),
        "finished_at": _iso(export.finished_at),
        "expires_at": _iso(export.expires_at),
        "error": export.error,
    }
