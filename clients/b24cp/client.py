"""The agent API of the control plane over `urllib` (standard library only).

One method per call of the API (the contract is `GET /api/v1/openapi.json`):

| method            | call                                   |
|-------------------|----------------------------------------|
| `submit`          | `POST /api/v1/plans` (a call or a chain of steps; `wait`, `dry_run`) |
| `get` / `poll`    | `GET /api/v1/plans/<id>` (`wait` ≤ 30 s long-poll)  |
| `wait`            | `get` repeatedly until the plan is final or `timeout` passes |
| `cancel`          | `POST /api/v1/plans/<id>/cancel`        |
| `list`            | `GET /api/v1/plans`                     |
| `capabilities`    | `GET /api/v1/capabilities`              |
| `describe`        | `GET /api/v1/methods/<name>?portal=`    |
| `events`          | `GET /api/v1/events` (if the plane serves the event feed) |
| `export`          | `POST /api/v1/exports` (a whole list method to a JSON-lines or CSV file) |
| `export_get`      | `GET /api/v1/exports/<id>` (status and progress)  |
| `export_download` | `GET /api/v1/exports/<id>/file`, streamed to a local file |
| `export_cancel`   | `POST /api/v1/exports/<id>/cancel` (stop an export that waits or runs) |
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "B24CP_URL"
TOKEN_ENV = "B24CP_TOKEN"
MAX_SERVER_WAIT = 30  # the API holds an answer at most this long (API_MAX_WAIT_SECONDS)

# Plan states (apps/plans/choices.py). needs_reconciliation ends a wait: a human must settle it.
FINAL_STATES = frozenset({"succeeded", "failed", "rejected", "expired", "cancelled", "needs_reconciliation"})
PENDING_STATES = frozenset({"submitted", "pending_approval", "approved", "executing"})
# Export states (apps/exports/choices.py).
EXPORT_FINAL_STATES = frozenset({"succeeded", "failed", "rejected", "expired", "cancelled"})

Json = dict[str, Any]


class ClientError(Exception):
    """Base of everything this client raises."""


class Unreachable(ClientError):
    """The plane could not be reached or did not answer with JSON."""


class ApiError(ClientError):
    """The plane answered `{"error": {...}}`. `code` is the API's error code (`not_granted`,
    `denied_by_policy`, `invalid_request`, `not_found`, `unauthenticated`, `rate_limited`, ...);
    `details` is the whole error object (`field`, `pack`, `missing`, `retry_after`, ...)."""

    def __init__(self, status: int, code: str, message: str, details: Mapping[str, Any] | None = None):
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    @property
    def refused(self) -> bool:
        """True when the plane refused the call by grant or policy (403)."""
        return self.code in ("not_granted", "denied_by_policy")

    @property
    def pack(self) -> str | None:
        """For `not_granted`: the pack that would grant the method, if a built-in one does."""
        return self.details.get("pack")


class Client:
    """A bearer-token client of one control plane.

    `base_url` is the plane's root (`https://plane.example.com`), not `/api/v1`. The token is
    the agent's bearer token; `Client.from_env()` reads both from the environment.
    """

    def __init__(self, base_url: str, token: str, *, timeout: float = 40.0, user_agent: str = "b24cp/1.0"):
        if not token:
            raise ClientError(f"No agent token: set {TOKEN_ENV}.")
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ClientError(f"The plane URL must be http(s)://host[:port], not {base_url!r}.")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout
        self.user_agent = user_agent

    def __repr__(self) -> str:  # never show the token
        return f"Client({self.base_url!r})"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> Client:
        env = os.environ if environ is None else environ
        return cls(env.get(URL_ENV) or DEFAULT_URL, env.get(TOKEN_ENV, ""), **kwargs)

    # --- plans ---------------------------------------------------------------------------------

    def submit(
        self,
        portal: str,
        *,
        method: str | None = None,
        params: Mapping[str, Any] | None = None,
        steps: Sequence[Mapping[str, Any]] | None = None,
        reason: str | None = None,
        idempotency_key: str | None = None,
        callback_url: str | None = None,
        wait: int = 0,
        dry_run: bool = False,
    ) -> Json:
        """Submit one call (`method`, `params`) or a chain (`steps`: `[{name, method, params}]`,
        later steps refer to earlier results as `$result[name]`). Returns the plan: `status` is
        `succeeded` at once for an `auto` read with `wait`, `pending_approval` when approvers
        must decide. With `dry_run` nothing is created; the answer says what would happen."""
        if (method is None) == (steps is None):
            raise ClientError("Pass either method (with params) or steps.")
        body: Json = {"portal": portal}
        if method is not None:
            body["method"] = method
            body["params"] = dict(params or {})
        else:
            body["steps"] = [dict(s) for s in steps or ()]
        if reason:
            body["reason"] = reason
        if idempotency_key:
            body["idempotency_key"] = idempotency_key
        if callback_url:
            body["callback_url"] = callback_url
        query = {"wait": _server_wait(wait)} if wait else {}
        if dry_run:
            query["dry_run"] = 1
        return self._request("POST", "/api/v1/plans", query=query, body=body)

    def get(self, plan_id: str, *, wait: int = 0) -> Json:
        """The plan; with `wait` (≤ 30 s) the plane holds the answer until the plan is final."""
        query = {"wait": _server_wait(wait)} if wait else {}
        return self._request("GET", f"/api/v1/plans/{_segment(plan_id)}", query=query)

    poll = get

    def wait(self, plan_id: str, *, timeout: float = 60.0) -> Json:
        """Long-poll until the plan is final (see `FINAL_STATES`) or `timeout` seconds pass;
        returns the plan as last seen (check its `status`)."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            remaining = deadline - time.monotonic()
            plan = self.get(plan_id, wait=max(0, min(MAX_SERVER_WAIT, int(remaining))))
            if plan.get("status") in FINAL_STATES or deadline - time.monotonic() <= 0:
                return plan

    def cancel(self, plan_id: str) -> Json:
        """Cancel a plan that is not executing yet (`conflict` otherwise)."""
        return self._request("POST", f"/api/v1/plans/{_segment(plan_id)}/cancel", body={})

    def list(self, *, status: str | None = None, portal: str | None = None, limit: int | None = None,
             cursor: str | None = None) -> Json:
        """This agent's plans, newest first: `{"plans": [...], "next_cursor": ...}`."""
        query = {k: v for k, v in {"status": status, "portal": portal, "limit": limit, "cursor": cursor}.items()
                 if v not in (None, "")}
        return self._request("GET", "/api/v1/plans", query=query)

    # --- discovery -----------------------------------------------------------------------------

    def capabilities(self) -> Json:
        """Portals, granted packs, the policy per risk and the method patterns of each pack."""
        return self._request("GET", "/api/v1/capabilities")

    def describe(self, name: str, *, portal: str) -> Json:
        """A method's risk, scope, packs, and whether this agent holds it and with which policy."""
        return self._request("GET", f"/api/v1/methods/{_segment(name)}", query={"portal": portal})

    def events(self, *, after: str | None = None, wait: int = 0, limit: int | None = None) -> Json:
        """Inbound Bitrix24 events this agent's packs may read. Raises ApiError `not_available`
        when the plane does not serve the event feed."""
        query: Json = {k: v for k, v in {"after": after, "limit": limit}.items() if v not in (None, "")}
        if wait:
            query["wait"] = _server_wait(wait)
        try:
            return self._request("GET", "/api/v1/events", query=query)
        except ApiError as exc:
            if exc.status == 404 and exc.code in ("not_found", "http_404"):
                raise ApiError(404, "not_available", "This plane does not serve the event feed "
                               "(GET /api/v1/events answered 404).", exc.details) from None
            raise

    # --- exports -------------------------------------------------------------------------------

    def export(self, portal: str, method: str, *, select: Sequence[str] | None = None,
               filter: Mapping[str, Any] | None = None, order: Mapping[str, str] | None = None,  # noqa: A002
               format: str = "jsonl", reason: str | None = None,  # noqa: A002
               idempotency_key: str | None = None) -> Json:
        """Ask for every row of a list method (`crm.lead.list`) as a file. The request becomes a
        read plan (approvers decide when the policy asks); poll `export_get` for progress."""
        body: Json = {"portal": portal, "method": method, "format": format}
        if select:
            body["select"] = list(select)
        if filter:
            body["filter"] = dict(filter)
        if order:
            body["order"] = dict(order)
        if reason:
            body["reason"] = reason
        if idempotency_key:
            body["idempotency_key"] = idempotency_key
        return self._request("POST", "/api/v1/exports", body=body)

    def export_get(self, export_id: str) -> Json:
        """The export: `status` and `progress` (rows_fetched, estimated_total, rows_per_second,
        seconds_left, percent)."""
        return self._request("GET", f"/api/v1/exports/{_segment(export_id)}")

    def export_cancel(self, export_id: str) -> Json:
        """Stop an export that waits for approval (its plan is cancelled too), is queued or runs
        (its partial file is removed); `conflict` (with `status`) once it has ended."""
        return self._request("POST", f"/api/v1/exports/{_segment(export_id)}/cancel", body={})

    def export_download(self, export_id: str, path: str, *, chunk: int = 1 << 16) -> int:
        """Stream the finished export's file to `path`; returns the bytes written."""
        url = f"{self.base_url}/api/v1/exports/{_segment(export_id)}/file"
        headers = {"Authorization": f"Bearer {self._token}", "User-Agent": self.user_agent}
        request = urllib.request.Request(url, method="GET", headers=headers)  # noqa: S310 (http(s) checked)
        written = 0
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response, open(path, "wb") as out:  # noqa: S310
                while True:
                    data = response.read(chunk)
                    if not data:
                        break
                    out.write(data)
                    written += len(data)
        except urllib.error.HTTPError as exc:
            _remove(path)
            _raise_api_error(exc, "GET", f"/api/v1/exports/{export_id}/file")
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            _remove(path)
            raise Unreachable(f"Cannot reach the plane at {self.base_url}: {getattr(exc, 'reason', exc)}") from None
        return written

    # --- transport -----------------------------------------------------------------------------

    def _request(self, verb: str, path: str, *, query: Mapping[str, Any] | None = None,
                 body: Mapping[str, Any] | None = None) -> Json:
        url = self.base_url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json",
                   "User-Agent": self.user_agent}
        if data is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=verb, headers=headers)  # noqa: S310 (http(s) checked)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return _decode(response.status, response.read())
        except urllib.error.HTTPError as exc:
            _raise_api_error(exc, verb, path)
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unreachable(f"Cannot reach the plane at {self.base_url}: {reason}") from None


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _raise_api_error(exc: urllib.error.HTTPError, verb: str, path: str) -> None:
    raw = exc.read()
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = None
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict) and "code" in error:
        details = {k: v for k, v in error.items() if k not in ("code", "message")}
        if "Retry-After" in exc.headers:
            details.setdefault("retry_after", exc.headers["Retry-After"])
        raise ApiError(exc.code, str(error["code"]), str(error.get("message", "")), details) from None
    raise ApiError(exc.code, f"http_{exc.code}", f"{verb} {path} answered HTTP {exc.code}.") from None


def _decode(status: int, raw: bytes) -> Json:
    try:
        payload = json.loads(raw)
    except ValueError:
        raise Unreachable(f"The plane answered HTTP {status} with something that is not JSON.") from None
    if not isinstance(payload, dict):
        raise Unreachable("The plane answered JSON that is not an object.")
    return payload


def _server_wait(seconds: float) -> int:
    return max(0, min(MAX_SERVER_WAIT, int(seconds)))


def _segment(value: str) -> str:
    if not isinstance(value, str) or not value:
        raise ClientError("An id or method name is needed.")
    return urllib.parse.quote(value, safe="")
