"""The agent feed's part of the OpenAPI document. `apps.plans.openapi.openapi_document` (owned
elsewhere) hooks it in with `add_events_paths(document)`; it only adds a path and a schema."""

from __future__ import annotations

from .choices import EventSource

_ERR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}

INBOUND_EVENT = {
    "type": "object",
    "required": ["cursor", "portal", "event", "ts", "source", "data", "received_at"],
    "properties": {
        "cursor": {"type": "string", "description": "Pass as ?after= to continue after this event"},
        "portal": {"type": "string", "description": "The portal's slug"},
        "event": {"type": "string", "description": "Bitrix24 event code, e.g. ONCRMLEADADD"},
        "ts": {"type": "integer", "description": "The event's Unix time (0 if it carried none)"},
        "source": {"type": "string", "enum": EventSource.values},
        "data": {"type": "object", "description": "The event's data (IDs only; fetch the object with a read plan). "
                                                  "Tokens are replaced by ***"},
        "additional": {"type": "object", "description": "EVENT_ADDITIONAL of an offline record"},
        "received_at": {"type": "string", "format": "date-time"},
    },
}

EVENTS_PATH = {
    "get": {
        "operationId": "listEvents",
        "summary": "Inbound Bitrix24 events your packs may read (long-poll with wait)",
        "description": (
            "Events of portals you hold grants on, oldest first. An event is shown only if one of your grants "
            "covers the read method of its entity with a policy other than deny (ONCRMLEADADD needs crm.lead.get, "
            "ONTASKUPDATE tasks.task.get); events of unknown entities are shown to nobody. Keep next_cursor and pass "
            "it as after: nothing is skipped or repeated."),
        "security": [{"bearer": []}],
        "parameters": [
            {"name": "portal", "in": "query", "schema": {"type": "string"}, "description": "Only this portal"},
            {"name": "after", "in": "query", "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
             "description": "next_cursor of the previous answer (default: from the start)"},
            {"name": "types", "in": "query", "schema": {"type": "string"},
             "description": "Comma-separated event codes, e.g. ONCRMLEADADD,ONCRMDEALUPDATE"},
            {"name": "limit", "in": "query",
             "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}},
            {"name": "wait", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 30},
             "description": "Hold the answer up to this many seconds until an event arrives"},
        ],
        "responses": {
            "200": {"description": "Events and the cursor to continue from", "content": {"application/json": {
                "schema": {"type": "object", "required": ["events", "next_cursor"], "properties": {
                    "events": {"type": "array", "items": {"$ref": "#/components/schemas/InboundEvent"}},
                    "next_cursor": {"type": "string"}}}}}},
            "400": {"description": "Invalid parameter (names the field)", **_ERR},
            "401": {"description": "Missing or invalid bearer token", **_ERR},
            "404": {"description": "Unknown portal, or no grant on it", **_ERR},
            "429": {"description": "Rate limited; see Retry-After", **_ERR},
        },
    },
}


def add_events_paths(document: dict) -> dict:
    """Add `GET /api/v1/events` and the `InboundEvent` schema to an OpenAPI document (in place)."""
    document.setdefault("paths", {})["/api/v1/events"] = EVENTS_PATH
    document.setdefault("components", {}).setdefault("schemas", {})["InboundEvent"] = INBOUND_EVENT
    return document
