"""Pure parsing of Bitrix24 event deliveries (FACTS §9): no database, no HTTP.

Bitrix24 posts `application/x-www-form-urlencoded` with PHP-style keys (`data[FIELDS][ID]`,
`auth[member_id]`, `data[PARAMS][MENTIONED_LIST][567]`). `parse_form` turns the body into nested
dicts as PHP would (`a[]` appends), refusing more than `max_fields` fields and keys nested deeper
than `MAX_DEPTH`. `scrub` replaces every token-like value in `data` (ONIMBOTMESSAGEADD carries the
bot's tokens there) so nothing secret is stored or shown to agents.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

from apps.core.canonical import sha256_hex
from apps.core.exceptions import InvalidRequest

MAX_DEPTH = 12
EVENT_NAME = re.compile(r"[A-Za-z0-9_.]{1,100}")
_KEY = re.compile(r"([^\[\]]*)((?:\[[^\[\]]*\])*)$")
_PART = re.compile(r"\[([^\[\]]*)\]")
SECRET_KEYS = frozenset({
    "access_token", "refresh_token", "application_token", "client_secret", "password", "auth_id", "refresh_id",
})
SCRUBBED = "***"


def _split_key(key: str) -> list[str]:
    match = _KEY.fullmatch(key)
    if not match or not match.group(1):
        return [key]  # PHP keeps a malformed key as it is
    return [match.group(1), *_PART.findall(match.group(2))]


def parse_pairs(pairs: list[tuple[str, str]]) -> dict:
    """Nest `a[b][c]=v` pairs into dicts. A key that is both a value and a container is a 400."""
    root: dict = {}
    for key, value in pairs:
        parts = _split_key(key)
        if len(parts) > MAX_DEPTH:
            raise InvalidRequest(f"The field {key[:80]!r} is nested too deeply.", field=key[:80])
        node = root
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if part == "":  # a[] appends, numbered as PHP does
                numeric = [int(k) for k in node if isinstance(k, str) and k.isdigit()]
                part = str(max(numeric) + 1 if numeric else 0)
            if last:
                if isinstance(node.get(part), dict):
                    raise InvalidRequest(f"The field {key[:80]!r} is both a value and a group.", field=key[:80])
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise InvalidRequest(f"The field {key[:80]!r} is both a value and a group.", field=key[:80])
                node = child
    return root


def form_pairs(body: bytes, *, max_fields: int) -> list[tuple[str, str]]:
    """The (key, value) pairs of a form body; more than `max_fields` fields is a 400."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("The body is not UTF-8.", field="body") from None
    try:
        return parse_qsl(text, keep_blank_values=True, max_num_fields=max_fields)
    except ValueError:
        raise InvalidRequest(f"The body has more than {max_fields} fields.", field="body", limit=max_fields) from None


def parse_form(body: bytes, *, max_fields: int) -> dict:
    return parse_pairs(form_pairs(body, max_fields=max_fields))


def scrub(value):
    """A copy of `value` with every secret-named key's value replaced by `***`."""
    if isinstance(value, dict):
        return {k: (SCRUBBED if str(k).lower() in SECRET_KEYS else scrub(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def payload_hash(payload) -> str:
    return sha256_hex(payload)


@dataclass(frozen=True)
class Delivery:
    """One online delivery, parsed. `auth` is kept for the checks only and never stored."""

    event: str
    data: dict
    ts: int
    event_handler_id: str
    member_id: str
    application_token: str
    auth: dict

    @property
    def payload_hash(self) -> str:
        return payload_hash(self.data)


def _text(value) -> str:
    return value if isinstance(value, str) else ""


def parse_ts(value) -> int:
    if value in (None, ""):
        return 0
    if not isinstance(value, str) or not value.isdigit() or len(value) > 12:
        raise InvalidRequest("ts must be a Unix time.", field="ts")
    return int(value)


def parse_delivery(form: dict) -> Delivery:
    event = form.get("event")
    if not isinstance(event, str) or not EVENT_NAME.fullmatch(event):
        raise InvalidRequest("event is missing or malformed.", field="event")
    data = form.get("data", {})
    if isinstance(data, str):  # an empty array is dropped by PHP; a plain string is kept as is
        data = {"": data} if data else {}
    auth = form.get("auth") if isinstance(form.get("auth"), dict) else {}
    handler_id = _text(form.get("event_handler_id"))
    return Delivery(
        event=event.upper(),
        data=scrub(data),
        ts=parse_ts(form.get("ts")),
        event_handler_id=handler_id[:32] if handler_id.isdigit() else "",
        member_id=_text(auth.get("member_id")),
        application_token=_text(auth.get("application_token")),
        auth=auth,
    )


# --- offline records (event.offline.get, FACTS §11) ---------------------------------------------


@dataclass(frozen=True)
class OfflineRecord:
    offline_id: str
    message_id: str
    event: str
    ts: int
    data: dict
    additional: dict

    @property
    def payload_hash(self) -> str:
        # ID and MESSAGE_ID are part of the payload: a re-fetched record is the same row,
        # two records about the same object are two rows.
        return payload_hash({"data": self.data, "additional": self.additional, "id": self.offline_id,
                             "message_id": self.message_id})


def parse_timestamp(value) -> int:
    if not isinstance(value, str) or not value:
        return 0
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return 0
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return int(parsed.timestamp())


def parse_offline_record(record) -> OfflineRecord:
    """One element of `result.events`. Lenient: a record we cannot read well is still stored
    (and dead-lettered if its processing fails), never silently dropped."""
    if not isinstance(record, dict):
        record = {"EVENT_DATA": record}
    name = _text(record.get("EVENT_NAME")).upper()
    if not EVENT_NAME.fullmatch(name):
        name = "UNKNOWN"
    data = record.get("EVENT_DATA")
    data = data if isinstance(data, dict) else ({} if data in (False, None, "", []) else {"": data})
    additional = record.get("EVENT_ADDITIONAL")
    additional = additional if isinstance(additional, dict) else {}
    return OfflineRecord(
        offline_id=str(record.get("ID") or "")[:32],
        message_id=str(record.get("MESSAGE_ID") or "")[:64],
        event=name,
        ts=parse_timestamp(record.get("TIMESTAMP_X")),
        data=scrub(data),
        additional=scrub(additional),
    )
