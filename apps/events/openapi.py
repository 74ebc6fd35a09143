"""The agent feed's part of the OpenAPI document. `apps.plans.openapi.openapi_document` (owned
elsewhere) hooks it in with `add_events_paths(document)`; it only adds a path and a schema."""

from __future__ import annotations

from django.conf import settings

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
            {"name": "after", "in": "query", "schema": {"type": "string", "pattern": "^[0-9]{0,18}$"},
             "description": "next_cursor of the previous answer (empty or absent: from the start)"},
            {"name": "types", "in": "query",
             "schema": {"type": "string", "pattern": "^ *([A-Za-z0-9_.]{1,100} *(, *[A-Za-z0-9_.]{1,100} *){0,99})?$"},
             "description": "Comma-separated event codes, e.g. ONCRMLEADADD,ONCRMDEALUPDATE"},
            {"name": "limit", "in": "query",
             "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}},
            {"name": "wait", "in": "query", "schema": {"type": "integer", "minimum": 0, "maximum": 30},
             "description": "Hold the answer up to this many seconds until an event arrives (at most "
                            "API_MAX_WAIT_SECONDS)"},
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


SUBSCRIPTION = {
    "type": "object",
    "required": ["id", "portal", "types", "callback_url"],
    "properties": {
        "id": {"type": "string"},
        "portal": {"type": ["string", "null"], "description": "null: every portal you hold grants on"},
        "types": {"type": "array", "items": {"type": "string"}, "description": "empty: every event you may read"},
        "callback_url": {"type": "string", "format": "uri"},
        "secret": {"type": "string", "description": "HMAC-SHA256 key, in the creation answer only"},
        "created_at": {"type": "string", "format": "date-time"},
        "last_delivery_at": {"type": ["string", "null"], "format": "date-time"},
        "last_error": {"type": "string"},
    },
}
_SUB = {"$ref": "#/components/schemas/EventSubscription"}
SUBSCRIPTIONS_PATH = {
    "get": {
        "operationId": "listEventSubscriptions", "summary": "Your event subscriptions", "security": [{"bearer": []}],
        "responses": {"200": {"description": "Active subscriptions", "content": {"application/json": {"schema": {
            "type": "object", "properties": {"subscriptions": {"type": "array", "items": _SUB}}}}}},
            "401": {"description": "Missing or invalid bearer token", **_ERR}},
    },
    "post": {
        "operationId": "createEventSubscription",
        "summary": "POST matching events to your callback, signed",
        "description": (
            "Each delivery is a JSON body {subscription, event} (event as in GET /api/v1/events) with the header "
            "X-CP-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, '<t>.' + body)>. Non-2xx answers are retried "
            "(5 tries). Only events your packs may read are delivered; the secret is shown once."),
        "security": [{"bearer": []}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["callback_url"], "additionalProperties": False, "properties": {
                "callback_url": {"type": "string", "format": "uri", "maxLength": 500},
                "portal": {"type": "string"},
                "types": {"type": "array", "maxItems": 100,
                          "items": {"type": "string", "pattern": "^[A-Za-z0-9_.]{1,100}$"}}}}}}},
        "responses": {"201": {"description": "Subscribed (with the secret)",
                              "content": {"application/json": {"schema": _SUB}}},
                      "400": {"description": "Invalid request (names the field); also a callback_url "
                                             "that does not resolve to public addresses only", **_ERR},
                      "401": {"description": "Missing or invalid bearer token", **_ERR},
                      "404": {"description": "Unknown portal, or no grant on it", **_ERR},
                      "413": {"description": "Body too large", **_ERR},
                      "415": {"description": "Send the body as application/json", **_ERR}},
    },
    "delete": {
        "operationId": "deleteEventSubscription", "summary": "Unsubscribe", "security": [{"bearer": []}],
        "parameters": [{"name": "id", "in": "query", "required": True,
                        "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"}}],
        "responses": {"200": {"description": "Deleted"}, "404": {"description": "No such subscription", **_ERR},
                      "400": {"description": "Invalid parameter (names the field)", **_ERR},
                      "401": {"description": "Missing or invalid bearer token", **_ERR}},
    },
}


def add_events_paths(document: dict) -> dict:
    """Add the feed and subscription paths and their schemas to an OpenAPI document (in place)."""
    for parameter in EVENTS_PATH["get"]["parameters"]:
        if parameter["name"] == "wait":  # the served cap, as for plans
            parameter["schema"]["maximum"] = settings.API_MAX_WAIT_SECONDS
    paths = document.setdefault("paths", {})
    paths["/api/v1/events"] = EVENTS_PATH
    paths["/api/v1/events/subscriptions"] = SUBSCRIPTIONS_PATH
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["InboundEvent"] = INBOUND_EVENT
    schemas["EventSubscription"] = SUBSCRIPTION
    return document
