"""The OpenAPI 3.1 description of the agent API, built from the same schemas the views use.

The error codes are read from the exception hierarchy (`apps.core.exceptions.error_codes`) after
the URLconf is imported, so every code a view can raise is listed and none is kept by hand."""

import importlib
from functools import lru_cache

from django.conf import settings

from apps.core.exceptions import error_codes

from .choices import PlanStatus, Risk
from .schemas import COMPONENTS, CURSOR_PATTERN, IDEMPOTENCY_KEY, METHOD, PORTAL_SLUG, STEP


def served_error_codes() -> list[str]:
    """Every code of an ApplicationError subclass reachable from the served URLconf."""
    importlib.import_module(settings.ROOT_URLCONF)  # imports every view, hence every error class
    return list(error_codes())


def error_schema() -> dict:
    return {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "enum": served_error_codes()},
                    "message": {"type": "string"},
                    "field": {"type": "string", "description": "The offending part of the request (400)"},
                    "pack": {"type": ["string", "null"],
                             "description": "The pack that would grant it (not_granted)"},
                    "request_id": {"type": "string"},
                },
            }
        },
    }
# A stored step as answered: its params were checked on the way in.
RENDERED_STEP = {**STEP, "properties": {**STEP["properties"], "params": {"type": "object"}}}
PLAN = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "status": {"type": "string", "enum": PlanStatus.values},
        "risk": {"type": "string", "enum": Risk.values},
        "portal": {"type": "string"},
        "steps": {"type": "array", "items": RENDERED_STEP},
        "reason": {"type": "string"},
        "packs": {"type": "array", "items": {"type": "string"}},
        "approvals_required": {"type": "integer", "minimum": 0, "maximum": 2},
        "approvals": {"type": "array", "items": {"type": "object", "properties": {
            "decision": {"type": "string", "enum": ["approve", "reject"]},
            "comment": {"type": "string"}, "at": {"type": "string", "format": "date-time"}}}},
        "content_hash": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
        "expires_at": {"type": ["string", "null"], "format": "date-time"},
        "finished_at": {"type": ["string", "null"], "format": "date-time"},
        "result": {"description": "Per step: {steps: {name: {result, error, total, next}}}"},
        "error": {"type": ["object", "null"]},
    },
    "required": ["id", "status", "risk", "portal", "steps", "approvals_required", "approvals", "result", "error"],
}
DRY_RUN = {
    "type": "object",
    "properties": {
        "dry_run": {"const": True}, "allowed": {"type": "boolean"}, "outcome": {"type": "string"},
        "would_be": {"type": ["string", "null"]}, "risk": {"type": "string", "enum": Risk.values},
        "approvals_required": {"type": "integer"}, "packs": {"type": "array"}, "reasons": {"type": "array"},
        "missing": {"type": "array"}, "checked": {"type": "array"}, "steps": {"type": "array"},
    },
}


def _err(description):
    return _json(description, "#/components/schemas/Error")


def _json(description, ref):
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}}


def wait_parameter() -> dict:
    return {"name": "wait", "in": "query",
            "schema": {"type": "integer", "minimum": 0, "maximum": settings.API_MAX_WAIT_SECONDS},
            "description": "Hold the answer up to this many seconds until the plan is final"}


PLAN_ID = {"name": "plan_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
RATE_LIMITED = {**_err("Rate limited; see Retry-After"), "headers": {"Retry-After": {
    "required": True, "schema": {"type": "integer", "minimum": 1}, "description": "Seconds to wait"}}}
BAD_REQUEST = _err("Invalid request (names the field), e.g. a control character in the URL or query")
COMMON = {"401": _err("Missing or invalid bearer token"), "429": RATE_LIMITED}
PORTAL_QUERY = {"name": "portal", "in": "query", "schema": PORTAL_SLUG}
# List filters: an empty value is no filter.
PORTAL_FILTER = {"name": "portal", "in": "query", "description": "Only this portal's plans (empty: all)",
                 "schema": {"type": "string", "pattern": "^[^\\x00-\\x1f\\x7f]*$", "examples": ["acme"]}}
STATUS_FILTER = {"name": "status", "in": "query", "description": "Only plans in this status (empty: all)",
                 "schema": {"type": "string", "enum": [*PlanStatus.values, ""]}}
PLAN_LINKS = {
    "GetPlan": {"operationId": "getPlan", "parameters": {"plan_id": "$response.body#/id"}},
    "CancelPlan": {"operationId": "cancelPlan", "parameters": {"plan_id": "$response.body#/id"}},
}


@lru_cache(maxsize=1)
def openapi_document() -> dict:
    from apps.events.openapi import add_events_paths
    from apps.exports.openapi import add_exports_paths

    WAIT = wait_parameter()  # noqa: N806 - reads like the other parameter constants
    return add_exports_paths(add_events_paths({
        "openapi": "3.1.0",
        "info": {
            "title": "Bitrix24 agent control plane",
            "version": "1.0.0",
            "description": "Agents submit Bitrix24 REST calls as plans; policy decides what runs at once and "
                           "what waits for approvers. Errors are always {\"error\": {code, message, ...}}.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/plans": {
                "post": {
                    "operationId": "submitPlan", "summary": "Submit a plan (one call or a chain of steps)",
                    "parameters": [
                        WAIT,
                        {"name": "dry_run", "in": "query",
                         "schema": {"type": "string", "enum": ["", "0", "1", "false", "true"]},
                         "description": "Answer what would happen; create nothing, send nothing"},
                        {"name": "Idempotency-Key", "in": "header", "schema": IDEMPOTENCY_KEY,
                         "description": IDEMPOTENCY_KEY["description"] + "; send the header once, and if the body "
                                        "also has idempotency_key, the same value"},
                    ],
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/SubmitPlan"}}}},
                    "responses": {
                        "200": {"description": "Idempotent replay (Idempotent-Replayed: true) or a dry run",
                                "content": {"application/json": {"schema": {"oneOf": [
                                    {"$ref": "#/components/schemas/Plan"},
                                    {"$ref": "#/components/schemas/DryRun"}]}}}},
                        "201": {**_json("Plan created", "#/components/schemas/Plan"), "links": PLAN_LINKS},
                        "400": _err("Invalid request (names the field)"),
                        "403": _err("not_granted (names the pack that would grant it) or denied_by_policy"),
                        "404": _err("Unknown portal"),
                        "409": _err("The same idempotency key is still being processed"),
                        "413": _err("Body over 256 KiB"),
                        "415": _err("Body is not application/json"),
                        "422": _err("Idempotency key reused with another body"),
                        **COMMON,
                    },
                },
                "get": {
                    "operationId": "listPlans", "summary": "The agent's own plans, newest first",
                    "parameters": [
                        STATUS_FILTER,
                        PORTAL_FILTER,
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                        {"name": "cursor", "in": "query",
                         "schema": {"type": "string", "pattern": f"^({CURSOR_PATTERN.strip('^$')})?$"},
                         "description": "next_cursor of the previous page, as given (empty: the first page)"},
                    ],
                    "responses": {
                        "200": {"description": "A page of plans", "content": {"application/json": {"schema": {
                            "type": "object", "properties": {
                                "plans": {"type": "array", "items": {"$ref": "#/components/schemas/Plan"}},
                                "next_cursor": {"type": ["string", "null"]}}}}}},
                        "400": _err("Invalid filter"), **COMMON,
                    },
                },
            },
            "/api/v1/plans/{plan_id}": {
                "get": {
                    "operationId": "getPlan", "summary": "One plan; long-polls with ?wait=N",
                    "parameters": [PLAN_ID, WAIT],
                    "responses": {"200": _json("The plan", "#/components/schemas/Plan"),
                                  "400": _err("Invalid wait"), "404": _err("No such plan (or not this agent's)"),
                                  **COMMON},
                }
            },
            "/api/v1/plans/{plan_id}/cancel": {
                "post": {
                    "operationId": "cancelPlan", "summary": "Cancel a plan before it executes",
                    "parameters": [PLAN_ID],
                    "responses": {"200": _json("The cancelled plan", "#/components/schemas/Plan"),
                                  "400": BAD_REQUEST, "404": _err("No such plan"),
                                  "409": _err("Already executing or final"), **COMMON},
                }
            },
            "/api/v1/capabilities": {
                "get": {
                    "operationId": "getCapabilities",
                    "summary": "Portals, granted packs, policy per risk, method patterns",
                    "responses": {"200": {"description": "Capabilities", "content": {"application/json": {
                        "schema": {"type": "object", "properties": {
                            "agent": {"type": "string"}, "portals": {"type": "array"}}}}}},
                        "400": BAD_REQUEST, **COMMON},
                }
            },
            "/api/v1/methods/{name}": {
                "get": {
                    "operationId": "getMethod",
                    "summary": "Risk, scope, packs of a method; whether granted and with which policy",
                    "parameters": [
                        {"name": "name", "in": "path", "required": True, "schema": METHOD},
                        {**PORTAL_QUERY, "required": True},
                    ],
                    "responses": {"200": {"description": "The method", "content": {"application/json": {
                        "schema": {"type": "object"}}}},
                        "400": _err("Invalid name or missing portal"), "404": _err("Unknown portal"), **COMMON},
                }
            },
            "/api/v1/openapi.json": {
                "get": {"operationId": "getOpenapi", "summary": "This document", "security": [],
                        "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {
                            "schema": {"type": "object", "required": ["openapi", "paths"]}}}},
                            "400": BAD_REQUEST}},
            },
            "/healthz": {"get": {"operationId": "healthz", "summary": "Liveness", "security": [], "responses": {
                "200": {"description": "ok", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}}}}},
                "400": BAD_REQUEST}}},
            "/readyz": {"get": {
                "operationId": "readyz", "summary": "Readiness: database and broker", "security": [], "responses": {
                "200": {"description": "ready", "content": {"application/json": {"schema": {
                    "type": "object", "required": ["status", "checks"],
                    "properties": {"status": {"const": "ready"}, "checks": {"type": "object"}}}}}},
                "400": BAD_REQUEST, "503": _err("not ready")}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {**COMPONENTS, "Plan": PLAN, "DryRun": DRY_RUN, "Error": error_schema()},
        },
    }))
