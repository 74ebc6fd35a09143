"""Parse agent requests and render plans. The JSON Schemas here validate requests and are the
same objects the OpenAPI document publishes, so the document describes what is really served."""

import datetime
import re
import uuid
from dataclasses import dataclass

from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from apps.approvals.previews import changes as preview_changes
from apps.core.canonical import sha256_hex
from apps.core.exceptions import InvalidRequest

from .choices import PlanStatus
from .idempotency import validate_key
from .models import Plan

MAX_STEPS = 50
# The grammar of apps.policy.normalize (which also accepts, and normalises, surrounding spaces,
# percent-encoding and a `.json` suffix; the document names the canonical spelling).
METHOD_PATTERN = "^[A-Za-z0-9_]+(\\.[A-Za-z0-9_]+)*$"
METHOD = {"type": "string", "minLength": 1, "maxLength": 128, "pattern": METHOD_PATTERN,
          "description": "A Bitrix24 REST method, e.g. crm.lead.list", "examples": ["crm.lead.list"]}
# What apps.core.api.parse_json_body refuses in any string or key, said in JSON Schema: NUL. (Lone
# UTF-16 surrogates, which are not Unicode text, depth over 64 levels and repeated keys are said
# in SubmitPlan's description: JSON Schema patterns cannot portably name surrogates.)
TEXT_PATTERN = "^[^\\x00]*$"
JSON_VALUE_REF = {"$ref": "#/components/schemas/JsonValue"}
JSON_VALUE = {
    "description": "Any JSON value whose strings and keys hold no NUL and no lone surrogate",
    "anyOf": [
        {"type": "string", "pattern": TEXT_PATTERN},
        {"type": ["number", "boolean", "null"]},
        {"type": "array", "items": JSON_VALUE_REF},
        {"type": "object", "propertyNames": {"pattern": TEXT_PATTERN}, "additionalProperties": JSON_VALUE_REF},
    ],
}
PARAMS = {"type": "object", "description": "Parameters exactly as Bitrix24 takes them",
          "propertyNames": {"pattern": TEXT_PATTERN}, "additionalProperties": JSON_VALUE_REF,
          "examples": [{"select": ["ID", "TITLE"]}]}
STEP = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9_]{1,64}$",
                 "description": "Later steps refer to it as $result[name]"},
        "method": METHOD,
        "params": PARAMS,
    },
    "required": ["name", "method"],
    "additionalProperties": False,
}
PORTAL_SLUG = {"type": "string", "pattern": "^[-a-zA-Z0-9_]{1,64}$", "description": "The portal's slug",
               "examples": ["acme"]}
# Printable ASCII without the comma: a server joins repeated headers with commas, so a comma in
# an Idempotency-Key header cannot be told from two headers; the body field follows the header.
IDEMPOTENCY_KEY = {"type": "string", "pattern": "^[\\x20-\\x2b\\x2d-\\x7e]{1,255}$",
                   "description": "1–255 printable ASCII characters except the comma; kept 24 h per agent"}
SUBMIT_SCHEMA = {
    "type": "object",
    "properties": {
        "portal": PORTAL_SLUG,
        "method": METHOD,
        "params": PARAMS,
        "steps": {"type": "array", "minItems": 1, "maxItems": MAX_STEPS, "items": STEP,
                  "description": "A chain run as one Bitrix24 batch; step names are unique"},
        "reason": {"type": "string", "maxLength": 2000, "pattern": TEXT_PATTERN},
        "idempotency_key": IDEMPOTENCY_KEY,
        "callback_url": {"type": "string", "maxLength": 500, "pattern": "^([Hh][Tt][Tt][Pp][Ss]?://[^\\x00]*)?$",
                         "description": "An http(s) URL (empty: none)"},
    },
    "required": ["portal"],
    # Either one call (method, params) or a chain (steps, each with its own params).
    "oneOf": [{"required": ["method"]}, {"required": ["steps"]}],
    "dependentSchemas": {"steps": {"not": {"required": ["params"]}}},
    "additionalProperties": False,
    "description": "Strings never contain NUL (\\u0000) or lone UTF-16 surrogates, numbers are finite, "
                   "no object repeats a key and nesting stays within 64 levels.",
}
# The components the OpenAPI document publishes; the validator resolves their references in the
# same layout, so what is checked and what is published are one set of objects.
COMPONENTS = {"JsonValue": JSON_VALUE, "Step": STEP, "SubmitPlan": SUBMIT_SCHEMA}
_COMPONENTS_URI = "urn:controlplane:agent-api"
_registry = Registry().with_resource(
    _COMPONENTS_URI, DRAFT202012.create_resource({"components": {"schemas": COMPONENTS}}))
_validator = Draft202012Validator({"$ref": f"{_COMPONENTS_URI}#/components/schemas/SubmitPlan"},
                                  registry=_registry)
# parse_submit names the field itself for these (method vs steps vs params).
_COMBINATION_KEYWORDS = frozenset({"oneOf", "dependentSchemas"})


@dataclass(frozen=True)
class SubmitRequest:
    portal: str
    steps: list[dict]
    reason: str
    callback_url: str
    idempotency_key: str | None
    request_hash: str
    single: bool  # sent as {method, params} rather than steps


def _field(error) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else ""
        return f"{path}.{missing}".strip(".")
    if error.validator == "additionalProperties" and "'" in error.message:
        return f"{path}.{error.message.split(chr(39))[1]}".strip(".")
    return path or "body"


_SINGLE_CALL_KEYS = frozenset({"portal", "method", "params", "reason", "idempotency_key", "callback_url"})
_PORTAL_SLUG = re.compile(PORTAL_SLUG["pattern"].strip("^$"))
_METHOD = re.compile(METHOD_PATTERN.strip("^$"))
_KEY = re.compile(IDEMPOTENCY_KEY["pattern"].strip("^$"))
_CALLBACK_URL = re.compile(SUBMIT_SCHEMA["properties"]["callback_url"]["pattern"].strip("^$"))


def _plainly_valid(body: dict) -> bool:
    """True for the common single call whose every field plainly satisfies the schema, checked
    with the schema's own patterns and bounds, for a body from `parse_json_body` (which already
    refused what the schema's deep `JsonValue` checks exist for: NUL and lone surrogates in any
    string or key, non-finite numbers). Anything else (False) goes through the validator, which
    also names the offending field. A subset of what the schema accepts, never more (a property
    test checks it against the validator)."""
    if not (body.keys() <= _SINGLE_CALL_KEYS and "method" in body):
        return False
    portal, method = body.get("portal"), body["method"]
    if not (isinstance(portal, str) and _PORTAL_SLUG.fullmatch(portal)):
        return False
    if not (isinstance(method, str) and len(method) <= METHOD["maxLength"] and _METHOD.fullmatch(method)):
        return False
    if not isinstance(body.get("params", {}), dict):
        return False
    reason = body.get("reason", "")
    if not (isinstance(reason, str) and len(reason) <= SUBMIT_SCHEMA["properties"]["reason"]["maxLength"]):
        return False
    key = body.get("idempotency_key", "-")
    if not (isinstance(key, str) and _KEY.fullmatch(key)):
        return False
    url = body.get("callback_url", "")
    return (isinstance(url, str) and len(url) <= SUBMIT_SCHEMA["properties"]["callback_url"]["maxLength"]
            and _CALLBACK_URL.fullmatch(url) is not None)


def parse_submit(body: dict, *, header_key: str | None, strict_json: bool = False) -> SubmitRequest:
    """The submission in `body`. `strict_json`: the body came from `parse_json_body` (no NUL or
    lone surrogate anywhere, finite numbers), so a plain single call skips the validator."""
    plain = strict_json and _plainly_valid(body)
    errors = [] if plain else sorted((e for e in _validator.iter_errors(body)
                                      if _COMBINATION_KEYWORDS.isdisjoint(e.absolute_schema_path)),
                                     key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        err = errors[0]
        field = _field(err)
        if field == "steps" and err.validator == "maxItems":
            raise InvalidRequest(f"A plan has at most {MAX_STEPS} steps (one Bitrix24 batch); split the chain.",
                                 field="steps", limit=MAX_STEPS)
        raise InvalidRequest(err.message, field=field)
    has_method, has_steps = "method" in body, "steps" in body
    if has_method == has_steps:
        raise InvalidRequest("Send either method (with params) or steps, not both.",
                             field="steps" if has_steps else "method")
    if has_steps and "params" in body:
        raise InvalidRequest("params goes inside each step when steps are sent.", field="params")
    if has_steps:
        steps = [{"name": s["name"], "method": s["method"], "params": s.get("params", {})} for s in body["steps"]]
        names = [s["name"] for s in steps]
        if len(set(names)) != len(names):
            raise InvalidRequest("Step names must be unique.", field="steps")
    else:
        steps = [{"name": "call", "method": body["method"], "params": body.get("params", {})}]
    callback_url = body.get("callback_url", "")
    if callback_url and not callback_url.lower().startswith(("https://", "http://")):
        raise InvalidRequest("callback_url must be an http(s) URL.", field="callback_url")
    if header_key is not None and "," in header_key:
        raise InvalidRequest("Send one Idempotency-Key header; a key never contains a comma.",
                             field="Idempotency-Key")
    body_key = body.get("idempotency_key")
    if header_key is not None and body_key is not None and header_key != body_key:
        raise InvalidRequest("The Idempotency-Key header and idempotency_key differ.", field="idempotency_key")
    key = header_key if header_key is not None else body_key
    if key is not None:
        validate_key(key)
    hashed = {k: v for k, v in body.items() if k != "idempotency_key"}
    return SubmitRequest(
        portal=body["portal"], steps=steps, reason=body.get("reason", ""), callback_url=callback_url,
        idempotency_key=key, request_hash=sha256_hex(hashed), single=not has_steps,
    )


def parse_wait(value: str | None, *, maximum: int) -> int:
    if value in (None, ""):
        return 0
    try:
        wait = int(value)
    except ValueError:
        raise InvalidRequest(f"wait is a whole number of seconds from 0 to {maximum}.", field="wait") from None
    if not 0 <= wait <= maximum:
        raise InvalidRequest(f"wait is a whole number of seconds from 0 to {maximum}.", field="wait")
    return wait


def parse_flag(value: str | None, *, field: str) -> bool:
    if value in (None, "", "0", "false"):
        return False
    if value in ("1", "true"):
        return True
    raise InvalidRequest(f"{field} is 1 or 0.", field=field)


def _iso(value: datetime.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def render_plan(plan: Plan) -> dict:
    return {
        "id": str(plan.pk),
        "status": plan.status,
        "risk": plan.risk,
        "portal": plan.portal.slug,
        "steps": plan.steps,
        "reason": plan.reason,
        "packs": plan.packs,
        "approvals_required": plan.approvals_required,
        "approvals": [
            {"decision": a.decision, "comment": a.comment, "at": _iso(a.created_at)} for a in plan.approvals.all()
        ],
        "content_hash": plan.content_hash,
        "created_at": _iso(plan.created_at),
        "updated_at": _iso(plan.updated_at),
        "expires_at": _iso(plan.expires_at) if plan.status in (PlanStatus.PENDING_APPROVAL, PlanStatus.APPROVED)
        else None,
        "finished_at": _iso(plan.finished_at),
        "result": plan.result,
        "error": plan.error,
        "changes": preview_changes(plan),
    }


# --- list cursor: (created_at, id) of the last row seen ----------------------------------------
# `<microseconds since the epoch>-<plan id as 32 hex digits>`: every string matching CURSOR_PATTERN
# is a position in the list, so the published pattern is exactly what the server accepts.

CURSOR_PATTERN = "^[0-9]{1,17}-[0-9a-f]{32}$"
_CURSOR = re.compile(CURSOR_PATTERN.strip("^$"))
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def encode_cursor(plan: Plan) -> str:
    micros = (plan.created_at - _EPOCH) // datetime.timedelta(microseconds=1)
    return f"{micros}-{uuid.UUID(str(plan.pk)).hex}"


def decode_cursor(value: str) -> tuple[datetime.datetime, uuid.UUID]:
    if not isinstance(value, str) or not _CURSOR.fullmatch(value):
        raise InvalidRequest("cursor is not one this API gave out (use next_cursor as given).", field="cursor")
    micros, _, pk = value.partition("-")
    return _EPOCH + datetime.timedelta(microseconds=int(micros)), uuid.UUID(hex=pk)


def parse_limit(value: str | None) -> int:
    if value in (None, ""):
        return 50
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise InvalidRequest("limit is a whole number from 1 to 100.", field="limit")
    return limit
