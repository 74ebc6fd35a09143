"""The OpenAPI 3.1 description of the agent API, built from the same schemas the views use."""

from functools import lru_cache

from .choices import PlanStatus, Risk
from .schemas import STEP, SUBMIT_SCHEMA

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "enum": [
                    "invalid_request", "unauthenticated", "not_granted", "denied_by_policy", "not_found",
                    "method_not_allowed", "conflict", "idempotency_in_progress", "too_large",
                    "unsupported_media_type", "idempotency_mismatch", "rate_limited", "internal_error",
                ]},
                "message": {"type": "string"},
                "field": {"type": "string", "description": "The offending part of the request (400)"},
                "pack": {"type": ["string", "null"], "description": "The pack that would grant it (not_granted)"},
                "request_id": {"type": "string"},
            },
        }
    },
}
PLAN = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "status": {"type": "string", "enum": PlanStatus.values},
        "risk": {"type": "string", "enum": Risk.values},
        "portal": {"type": "string"},
        "steps": {"type": "array", "items": STEP},
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


WAIT = {"name": "wait", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 30},
        "description": "Hold the answer up to this many seconds until the plan is final"}
PLAN_ID = {"name": "plan_id", "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
COMMON = {"401": _err("Missing or invalid bearer token"), "429": _err("Rate limited; see Retry-After")}


@lru_cache(maxsize=1)
def openapi_document() -> dict:
    from apps.events.openapi import add_events_paths

    return add_events_paths({
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
                    "summary": "Submit a plan (one call or a chain of steps)",
                    "parameters": [
                        WAIT,
                        {"name": "dry_run", "in": "query", "schema": {"type": "integer", "enum": [0, 1]},
                         "description": "Answer what would happen; create nothing, send nothing"},
                        {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string", "maxLength": 255},
                         "description": "1–255 printable ASCII characters; kept 24 h per agent"},
                    ],
                    "requestBody": {"required": True, "content": {"application/json": {
                        "schema": {"$ref": "#/components/schemas/SubmitPlan"}}}},
                    "responses": {
                        "200": {"description": "Idempotent replay (Idempotent-Replayed: true) or a dry run",
                                "content": {"application/json": {"schema": {"oneOf": [
                                    {"$ref": "#/components/schemas/Plan"},
                                    {"$ref": "#/components/schemas/DryRun"}]}}}},
                        "201": _json("Plan created", "#/components/schemas/Plan"),
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
                    "summary": "The agent's own plans, newest first",
                    "parameters": [
                        {"name": "status", "in": "query", "schema": {"type": "string", "enum": PlanStatus.values}},
                        {"name": "portal", "in": "query", "schema": {"type": "string"}},
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
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
                    "summary": "One plan; long-polls with ?wait=N",
                    "parameters": [PLAN_ID, WAIT],
                    "responses": {"200": _json("The plan", "#/components/schemas/Plan"),
                                  "400": _err("Invalid wait"), "404": _err("No such plan (or not this agent's)"),
                                  **COMMON},
                }
            },
            "/api/v1/plans/{plan_id}/cancel": {
                "post": {
                    "summary": "Cancel a plan before it executes",
                    "parameters": [PLAN_ID],
                    "responses": {"200": _json("The cancelled plan", "#/components/schemas/Plan"),
                                  "404": _err("No such plan"), "409": _err("Already executing or final"), **COMMON},
                }
            },
            "/api/v1/capabilities": {
                "get": {
                    "summary": "Portals, granted packs, policy per risk, method patterns",
                    "responses": {"200": {"description": "Capabilities", "content": {"application/json": {
                        "schema": {"type": "object", "properties": {
                            "agent": {"type": "string"}, "portals": {"type": "array"}}}}}}, **COMMON},
                }
            },
            "/api/v1/methods/{name}": {
                "get": {
                    "summary": "Risk, scope, packs of a method; whether granted and with which policy",
                    "parameters": [
                        {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
                        {"name": "portal", "in": "query", "required": True, "schema": {"type": "string"}},
                    ],
                    "responses": {"200": {"description": "The method", "content": {"application/json": {
                        "schema": {"type": "object"}}}},
                        "400": _err("Invalid name or missing portal"), "404": _err("Unknown portal"), **COMMON},
                }
            },
            "/api/v1/openapi.json": {
                "get": {"summary": "This document", "security": [],
                        "responses": {"200": {"description": "OpenAPI 3.1"}}},
            },
            "/healthz": {"get": {"summary": "Liveness", "security": [], "responses": {"200": {"description": "ok"}}}},
            "/readyz": {"get": {"summary": "Readiness: database and broker", "security": [],
                                "responses": {"200": {"description": "ready"}, "503": _err("not ready")}}},
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"SubmitPlan": SUBMIT_SCHEMA, "Plan": PLAN, "DryRun": DRY_RUN, "Error": ERROR},
        },
    })
