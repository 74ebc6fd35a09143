"""The exports' part of the OpenAPI document. `apps.plans.openapi.openapi_document` hooks it in
with `add_exports_paths(document)`; it only adds paths and schemas."""

from apps.plans.schemas import IDEMPOTENCY_KEY, JSON_VALUE_REF, PORTAL_SLUG, TEXT_PATTERN

from .choices import ExportFormat, ExportStatus, Strategy
from .schemas import MAX_SELECT
from .services import exportable_names

_ERR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_EXPORT = {"$ref": "#/components/schemas/Export"}


def _err(description: str) -> dict:
    return {"description": description, **_ERR}


COMMON = {"401": _err("Missing or invalid bearer token"), "429": _err("Rate limited; see Retry-After")}

SUBMIT_EXPORT = {
    "type": "object",
    "required": ["portal", "method"],
    "additionalProperties": False,
    "description": "Strings never contain NUL (\\u0000) or lone UTF-16 surrogates, numbers are finite, "
                   "no object repeats a key and nesting stays within 64 levels.",
    "properties": {
        "portal": PORTAL_SLUG,
        "method": {"type": "string", "enum": list(exportable_names()), "examples": ["crm.lead.list"],
                   "description": "A documented REST v2 list method (a read whose name ends in .list), as "
                                  "documented or in lower case"},
        "select": {"type": "array", "maxItems": MAX_SELECT,
                   "items": {"type": "string", "minLength": 1, "pattern": TEXT_PATTERN},
                   "description": "Fields, as for the method (empty: its default fields)"},
        "filter": {"type": "object", "propertyNames": {"pattern": TEXT_PATTERN},
                   "additionalProperties": JSON_VALUE_REF,
                   "description": "The method's filter, e.g. {\">DATE_CREATE\": \"2024-01-01\"}"},
        "order": {"type": "object", "additionalProperties": {"type": "string", "enum": ["ASC", "DESC", "asc", "desc"]},
                  "description": "Empty or {\"ID\": ...}: ID-ordered chained paging (fastest); any other order: "
                                 "page offsets"},
        "format": {"type": "string", "enum": ExportFormat.values, "default": "jsonl"},
        "reason": {"type": "string", "maxLength": 2000, "pattern": TEXT_PATTERN, "description": "Shown to approvers"},
        "idempotency_key": IDEMPOTENCY_KEY,
    },
}

EXPORT = {
    "type": "object",
    "required": ["id", "status", "portal", "method", "format", "plan_id", "plan_status", "progress", "file", "error"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "status": {"type": "string", "enum": ExportStatus.values},
        "portal": {"type": "string"},
        "method": {"type": "string"},
        "select": {"type": "array", "items": {"type": "string"}},
        "filter": {"type": "object"},
        "order": {"type": "object"},
        "format": {"type": "string", "enum": ExportFormat.values},
        "plan_id": {"type": "string", "format": "uuid", "description": "The plan the request became (approvals)"},
        "plan_status": {"type": "string"},
        "strategy": {"type": ["string", "null"], "enum": [*Strategy.values, None]},
        "progress": {"type": "object", "required": ["rows_fetched", "estimated_total", "rows_per_second",
                                                    "seconds_left", "percent", "requests"], "properties": {
            "rows_fetched": {"type": "integer", "minimum": 0},
            "estimated_total": {"type": ["integer", "null"], "description": "The list's total when the plan ran"},
            "rows_per_second": {"type": ["number", "null"], "description": "Over the time spent fetching"},
            "seconds_left": {"type": ["number", "null"], "description": "At that rate"},
            "percent": {"type": ["number", "null"]},
            "requests": {"type": "integer", "minimum": 0, "description": "Batch requests sent so far"}}},
        "file": {"type": "object", "required": ["ready", "url", "bytes"], "properties": {
            "ready": {"type": "boolean"},
            "url": {"type": ["string", "null"], "description": "GET it with the same bearer token"},
            "bytes": {"type": "integer", "minimum": 0},
            "removed_at": {"type": ["string", "null"], "format": "date-time"}}},
        "created_at": {"type": ["string", "null"], "format": "date-time"},
        "started_at": {"type": ["string", "null"], "format": "date-time"},
        "finished_at": {"type": ["string", "null"], "format": "date-time"},
        "expires_at": {"type": ["string", "null"], "format": "date-time",
                       "description": "The file is removed after this (EXPORT_RETENTION_HOURS)"},
        "error": {"type": ["object", "null"]},
    },
}

EXPORT_LINKS = {
    "GetExport": {"operationId": "getExport", "parameters": {"export_id": "$response.body#/id"}},
    "CancelExport": {"operationId": "cancelExport", "parameters": {"export_id": "$response.body#/id"}},
    "GetExportFile": {"operationId": "getExportFile", "parameters": {"export_id": "$response.body#/id"}},
}
EXPORT_ID = {"name": "export_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}

PATHS = {
    "/api/v1/exports": {
        "post": {
            "operationId": "submitExport",
            "summary": "Export every row of a list method to a JSON-lines or CSV file",
            "description": (
                "The request becomes a read plan of the method (same grants, policy and approvals as "
                "POST /api/v1/plans; its plan_id is in the answer). Once the plan has run, the rows are fetched "
                "50 pages per batch request through the portal's shared limiter; poll GET /api/v1/exports/{id} "
                "for progress and download the file from file.url."),
            "security": [{"bearer": []}],
            "parameters": [{"name": "Idempotency-Key", "in": "header", "schema": IDEMPOTENCY_KEY}],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/SubmitExport"}}}},
            "responses": {
                "200": {"description": "Idempotent replay (Idempotent-Replayed: true)",
                        "content": {"application/json": {"schema": _EXPORT}}},
                "201": {"description": "Export created", "content": {"application/json": {"schema": _EXPORT}},
                        "links": EXPORT_LINKS},
                "400": _err("Invalid request (names the field), e.g. a method that is not a list"),
                "403": _err("not_granted (names the pack) or denied_by_policy"),
                "404": _err("Unknown portal"),
                "409": _err("The same idempotency key is still being processed"),
                "413": _err("Body too large"),
                "415": _err("Body is not application/json"),
                "422": _err("Idempotency key reused with another body"),
                **COMMON,
            },
        },
        "get": {
            "operationId": "listExports", "summary": "The agent's own exports, newest first",
            "security": [{"bearer": []}],
            "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                                      "maximum": 100}}],
            "responses": {"200": {"description": "Exports", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"exports": {"type": "array", "items": _EXPORT}}}}}},
                "400": _err("Invalid limit"), **COMMON},
        },
    },
    "/api/v1/exports/{export_id}": {
        "get": {
            "operationId": "getExport", "summary": "One export with its progress",
            "security": [{"bearer": []}], "parameters": [EXPORT_ID],
            "responses": {"200": {"description": "The export", "content": {"application/json": {"schema": _EXPORT}}},
                          "400": _err("Invalid request"), "404": _err("No such export (or not this agent's)"),
                          **COMMON},
        },
    },
    "/api/v1/exports/{export_id}/cancel": {
        "post": {
            "operationId": "cancelExport", "summary": "Stop an export that waits or runs",
            "description": (
                "An export waiting for approval (or approved, not yet run) cancels its plan too. A queued or "
                "running export stops before its next batch and its partial file is removed. The answer is the "
                "export, now cancelled; an export that has already ended answers 409 with its status."),
            "security": [{"bearer": []}], "parameters": [EXPORT_ID],
            "responses": {"200": {"description": "The export, cancelled",
                                  "content": {"application/json": {"schema": _EXPORT}}},
                          "400": _err("Invalid request"), "404": _err("No such export (or not this agent's)"),
                          "409": _err("The export has already ended (status says how)"), **COMMON},
        },
    },
    "/api/v1/exports/{export_id}/file": {
        "get": {
            "operationId": "getExportFile", "summary": "The export's file (once it has succeeded)",
            "security": [{"bearer": []}], "parameters": [EXPORT_ID],
            "responses": {
                "200": {"description": "The file", "content": {
                    "application/x-ndjson": {"schema": {"type": "string"}},
                    "text/csv": {"schema": {"type": "string"}}}},
                "400": _err("Invalid request"), "404": _err("No such export (or not this agent's)"),
                "409": _err("The export has not succeeded (yet)"),
                "410": _err("The file was removed after its retention period"), **COMMON},
        },
    },
}


def add_exports_paths(document: dict) -> dict:
    document["paths"].update(PATHS)
    document["components"]["schemas"].update({"SubmitExport": SUBMIT_EXPORT, "Export": EXPORT})
    return document
