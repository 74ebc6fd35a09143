"""A stub Bitrix24 portal served over real HTTP on 127.0.0.1 that keeps an offline event queue with
the semantics of FACTS §11, and the handler list of FACTS §9 — until the sandbox (apps/sandbox,
issue 9 point 6) implements them. Tests talk to it only through `OfflineQueueStub`'s small
interface (`add`, `records`, `calls`, `count`, `errors_answered`), so a sandbox-backed fixture
with the same interface can replace it.

What it implements:
- `event.offline.get` (`filter`, `order` (ID/TIMESTAMP_X), `limit` (default 50), `clear` (default
  **1**: returned records are deleted), `process_id` (re-fetch that reserved batch), `auth_connector`,
  `error` (default 0)). With `clear=0` the records are reserved under a new `process_id` and hidden
  from other readers. Result `{"process_id": str|null, "events": [{ID, TIMESTAMP_X, EVENT_NAME,
  EVENT_DATA, EVENT_ADDITIONAL, MESSAGE_ID}]}`.
- `event.offline.clear` (`process_id`*, `id[]` or `message_id[]`; `message_id` ignored when `id` is
  given; neither: the whole reserved batch) -> `true`.
- `event.offline.error` (`process_id`*, `message_id[]`) marks records failed -> `true`.
- `event.offline.list` (`filter` incl. PROCESS_ID, ERROR; `order` default ID:ASC; `start`, pages of
  50; `auth_connector`): flat records with PROCESS_ID and ERROR, `total`, no reservation.
- `event.bind` / `event.get` / `event.unbind`.
- Only app auth (`auth` in the JSON body, the admin's token) may call `event.*`: a webhook call
  gets `WRONG_AUTH_TYPE`, a non-admin token `ACCESS_DENIED` (samples/error_access_denied_*).
- The standard plan's leaky bucket (2 req/s, burst 50): over it, 503 `QUERY_LIMIT_EXCEEDED`
  (counted in `errors_answered`).
- `auth_connector`: a record made by a write that carried connector X is never queued for X;
  records with no source are visible to every reader, records with a source only to readers
  that pass an `auth_connector`.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
from collections import Counter

from tests.integration.bitrix.stub import StubServer

ADMIN_TOKEN = "stub-admin-access-token"
USER_TOKEN = "stub-user-access-token"
PAGE = 50


def _ok(result, **extra):
    return 200, {"result": result, **extra, "time": {"start": time.time(), "finish": time.time(), "operating": 0}}, {}


def _err(status, code, description):
    return status, {"error": code, "error_description": description}, {}


def _ids(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, dict):
        value = list(value.values())
    if not isinstance(value, list):
        value = [value]
    return [str(v) for v in value]


class OfflineQueueStub:
    def __init__(self, *, rate: float = 2.0, burst: int = 50):
        self.server = StubServer()
        self.server.respond = self._respond
        self.lock = threading.RLock()
        self.rate, self.burst = rate, burst
        self._level, self._at = 0.0, time.monotonic()
        self._next_id = 1
        self.queue: list[dict] = []
        self.handlers: list[dict] = []
        self.errors_answered: Counter = Counter()
        #: hook for tests: called with (method, params) before answering; an answer it returns
        #: ((status, body, headers)) is sent instead and the method is not applied.
        self.before_answer = None

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self):
        self.server.start()
        return self

    def stop(self):
        self.server.stop()

    @property
    def base_url(self) -> str:
        return f"{self.server.url}/p"

    # --- the interface tests use ---------------------------------------------------------------
    def add(self, event: str, data: dict | None = None, *, source: str = "", additional: dict | None = None) -> dict:
        """A change on the portal queues one record (the queue keeps one per object: last wins)."""
        with self.lock:
            record_id = self._next_id
            self._next_id += 1
            record = {
                "ID": str(record_id),
                "TIMESTAMP_X": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "EVENT_NAME": event.upper(),
                "EVENT_DATA": data if data is not None else False,
                "EVENT_ADDITIONAL": additional if additional is not None else False,
                "MESSAGE_ID": secrets.token_hex(8),
                "PROCESS_ID": "",
                "ERROR": 0,
                "SOURCE": source,
            }
            object_id = (data or {}).get("FIELDS", {}).get("ID") if isinstance(data, dict) else None
            if object_id is not None:  # one record per object: the last change wins
                self.queue = [r for r in self.queue if not (
                    r["PROCESS_ID"] == "" and r["EVENT_NAME"] == record["EVENT_NAME"]
                    and isinstance(r["EVENT_DATA"], dict) and r["EVENT_DATA"].get("FIELDS", {}).get("ID") == object_id)]
            self.queue.append(record)
            return dict(record)

    def records(self) -> list[dict]:
        with self.lock:
            return [dict(r) for r in self.queue]

    def calls(self, method: str) -> int:
        return sum(1 for seen in self.server.requests if seen.path.rsplit("/", 1)[-1] == method)

    @property
    def requests(self):
        return self.server.requests

    # --- HTTP ----------------------------------------------------------------------------------
    def _admit(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self._level = max(0.0, self._level - (now - self._at) * self.rate)
            self._at = now
            if self._level + 1 > self.burst:
                return False
            self._level += 1
            return True

    def _respond(self, seen):
        if not self._admit():
            self.errors_answered["QUERY_LIMIT_EXCEEDED"] += 1
            return _err(503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
        parts = seen.path.split("/")
        method = parts[-1]
        params = seen.json if isinstance(seen.json, dict) else {}
        webhook = len(parts) > 4 and parts[-3].isdigit()  # /p/rest/<user>/<code>/<method>
        if method.startswith("event"):
            if webhook:
                return _err(400, "WRONG_AUTH_TYPE", "Application context required")
            if params.get("auth") not in (ADMIN_TOKEN, USER_TOKEN):
                return _err(401, "NO_AUTH_FOUND", "Wrong authorization data")
            if params.get("auth") != ADMIN_TOKEN and (method.startswith("event.offline") or
                                                       params.get("event_type") == "offline"):
                return _err(403, "ACCESS_DENIED", "Access denied!")
        if self.before_answer is not None:
            answer = self.before_answer(method, params)
            if answer is not None:
                return answer
        handler = {
            "event.offline.get": self._get, "event.offline.clear": self._clear, "event.offline.error": self._error,
            "event.offline.list": self._list, "event.bind": self._bind, "event.get": self._handlers_get,
            "event.unbind": self._unbind,
        }.get(method)
        if handler is None:
            return _err(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
        with self.lock:
            return handler(params)

    # --- event.offline.* -----------------------------------------------------------------------
    def _visible(self, record, connector) -> bool:
        if connector:
            return record["SOURCE"] != connector
        return record["SOURCE"] == ""

    @staticmethod
    def _filtered(records, flt):
        if not isinstance(flt, dict):
            return records
        out = records
        for key, value in flt.items():
            op = ""
            while key and key[0] in "<>=!":
                op, key = op + key[0], key[1:]
            field = key.upper()

            def keep(r, field=field, op=op, value=value):
                have = r.get(field)
                if field in ("ID", "ERROR"):
                    have, value_ = int(have or 0), int(value)
                else:
                    value_ = value
                return {"": have == value_, "=": have == value_, "!": have != value_, ">": have > value_,
                        ">=": have >= value_, "<": have < value_, "<=": have <= value_}.get(op, False)
            out = [r for r in out if keep(r)]
        return out

    @staticmethod
    def _ordered(records, order, default):
        order = order if isinstance(order, dict) and order else default
        out = list(records)
        for field, direction in reversed(list(order.items())):
            if field.upper() in ("ID", "TIMESTAMP_X"):
                def key(r):
                    return int(r["ID"])
            else:
                def key(r, f=field):
                    return r.get(f.upper())
            out.sort(key=key, reverse=str(direction).upper() == "DESC")
        return out

    @staticmethod
    def _public(record):
        keys = ("ID", "TIMESTAMP_X", "EVENT_NAME", "EVENT_DATA", "EVENT_ADDITIONAL", "MESSAGE_ID")
        return {k: record[k] for k in keys}

    def _get(self, params):
        clear = str(params.get("clear", 1)) not in ("0", "false", "N")
        error = 1 if str(params.get("error", 0)) in ("1", "true", "Y") else 0
        try:
            limit = max(1, int(params.get("limit", PAGE)))
        except (TypeError, ValueError):
            limit = PAGE
        process_id = str(params.get("process_id") or "")
        connector = str(params.get("auth_connector") or "")
        if process_id:
            batch = [r for r in self.queue if r["PROCESS_ID"] == process_id and r["ERROR"] == error]
        else:
            batch = [r for r in self.queue if r["PROCESS_ID"] == "" and r["ERROR"] == error
                     and self._visible(r, connector)]
        batch = self._ordered(self._filtered(batch, params.get("filter")), params.get("order"),
                              {"TIMESTAMP_X": "ASC"})[:limit]
        events = [self._public(r) for r in batch]
        if clear:
            gone = {id(r) for r in batch}
            self.queue = [r for r in self.queue if id(r) not in gone]
            return _ok({"process_id": None, "events": events})
        if not batch:
            return _ok({"process_id": process_id or None, "events": []})
        if not process_id:
            process_id = secrets.token_hex(16)
            for r in batch:
                r["PROCESS_ID"] = process_id
        return _ok({"process_id": process_id, "events": events})

    def _clear(self, params):
        process_id = str(params.get("process_id") or "")
        if not process_id:
            return _err(400, "INVALID_ARGUMENTS", "process_id is required")
        ids, message_ids = _ids(params.get("id")), _ids(params.get("message_id"))
        def hit(r):
            if r["PROCESS_ID"] != process_id:
                return False
            if ids:
                return r["ID"] in ids
            if message_ids:
                return r["MESSAGE_ID"] in message_ids
            return True
        self.queue = [r for r in self.queue if not hit(r)]
        return _ok(True)

    def _error(self, params):
        process_id = str(params.get("process_id") or "")
        if not process_id:
            return _err(400, "INVALID_ARGUMENTS", "process_id is required")
        message_ids = _ids(params.get("message_id"))
        for r in self.queue:
            if r["PROCESS_ID"] == process_id and r["MESSAGE_ID"] in message_ids:
                r["ERROR"] = 1
        return _ok(True)

    def _list(self, params):
        connector = str(params.get("auth_connector") or "")
        rows = [r for r in self.queue if self._visible(r, connector)]
        rows = self._ordered(self._filtered(rows, params.get("filter")), params.get("order"), {"ID": "ASC"})
        try:
            start = max(0, int(params.get("start", 0)))
        except (TypeError, ValueError):
            start = 0
        page = [{**self._public(r), "PROCESS_ID": r["PROCESS_ID"], "ERROR": r["ERROR"]}
                for r in rows[start:start + PAGE]]
        extra = {"total": len(rows)}
        if start + PAGE < len(rows):
            extra["next"] = start + PAGE
        return _ok(page, **extra)

    # --- event.bind / get / unbind -------------------------------------------------------------
    def _bind(self, params):
        event = str(params.get("event") or "").upper()
        offline = params.get("event_type") == "offline"
        handler = "" if offline else str(params.get("handler") or "")
        if not event or (not offline and not handler):
            return _err(400, "ERROR_EVENT_NOT_FOUND", "Event not found")
        for h in self.handlers:
            if h["event"] == event and h["handler"] == handler and h["offline"] == int(offline):
                return _err(400, "ERROR_HANDLER_ALREADY_EXIST", "Handler already exists!")
        self.handlers.append({"event": event, "handler": handler, "auth_type": str(params.get("auth_type") or "0"),
                              "offline": int(offline), "auth_connector": str(params.get("auth_connector") or "")})
        return _ok(True)

    def _handlers_get(self, params):
        return _ok([{k: h[k] for k in ("event", "handler", "auth_type", "offline")} for h in self.handlers])

    def _unbind(self, params):
        event = str(params.get("event") or "").upper()
        offline = int(params.get("event_type") == "offline")
        handler = str(params.get("handler") or "")
        before = len(self.handlers)
        self.handlers = [h for h in self.handlers if not (
            h["event"] == event and h["offline"] == offline and (not handler or h["handler"] == handler))]
        return _ok({"count": before - len(self.handlers)})
