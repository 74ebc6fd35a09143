"""The Bitrix24 REST transport: the only module that imports `requests` for Bitrix24.

    client = BitrixClient(portal)            # or a portal id; the credential is decrypted here
    client.call("crm.lead.get", {"id": 5})   # -> CallResult
    client.batch([("a", "crm.lead.get", {"id": 5})], halt=True)   # -> BatchResult
    client.run_steps([{"name": "a", "method": "crm.lead.get", "params": {"id": 5}}])

Addresses (FACTS §1): webhook `<base>/rest/<user>/<code>/<method>`, OAuth `<base>/rest/<method>`
with `auth` in the JSON body; REST 3.0 adds `/api/`. A method documented only for REST 3.0
(`apps.policy.catalog`) goes to `/rest/api/`; `rest3=` forces either address.

Every request: JSON body, `Accept: application/json`, a User-Agent, connect and read timeouts,
`allow_redirects=False` (a 301/302 raises PortalMoved), one slot of the portal's shared leaky
bucket (apps.bitrix.limiter), and the per-method OPERATION_TIME_LIMIT hold. Logs carry the
portal slug and the method, never the URL; request exceptions are re-raised `from None` so no
traceback carries the webhook URL either.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests
from django.conf import settings

from apps.portals.models import AuthMode, Credential, CredentialStatus, Portal

from . import limiter
from .errors import (
    REFRESH_CODES,
    AuthFailed,
    BatchTooLong,
    BitrixError,
    NotSent,
    OutcomeUnknown,
    PortalError,
    PortalMoved,
    WaitForReset,
    classify_error,
)
from .phpquery import batch_command
from .redact import install_urllib3_filter, redact

logger = logging.getLogger(__name__)
install_urllib3_filter()

USER_AGENT = f"bitrix24-agent-control-plane/1.0 (+requests/{requests.__version__})"
MAX_BATCH = 50
#: When the portal does not say when the operating time resets, hold the method this long:
#: the oldest of the ten one-minute buckets has dropped out by then (FACTS §5).
DEFAULT_OPERATING_WINDOW = 600.0

_METHOD_NAME = re.compile(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*")
_COMMAND_NAME = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_WEBHOOK_USER = re.compile(r"[0-9]{1,12}")
_WEBHOOK_CODE = re.compile(r"[A-Za-z0-9_\-]{1,128}")


class InvalidCall(PortalError):
    """The call was refused here before sending (bad method name, bad batch command)."""

    default_code = "INVALID_CALL"
    not_sent = True


# --- one requests.Session per process -----------------------------------------------------------

_session: requests.Session | None = None
_session_pid: int | None = None
_session_lock = threading.Lock()


def get_session() -> requests.Session:
    """The process's session (a new one after fork: pooled sockets are not shared)."""
    global _session, _session_pid
    pid = os.getpid()
    if _session is None or _session_pid != pid:
        with _session_lock:
            if _session is None or _session_pid != pid:
                session = requests.Session()
                session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
                adapter = requests.adapters.HTTPAdapter(pool_connections=16, pool_maxsize=16, max_retries=0)
                session.mount("http://", adapter)
                session.mount("https://", adapter)
                _session, _session_pid = session, pid
    return _session


def timeouts() -> tuple[float, float]:
    return (float(settings.BITRIX_CONNECT_TIMEOUT), float(settings.BITRIX_READ_TIMEOUT))


# --- results ---------------------------------------------------------------------------------------


@dataclass
class CallResult:
    method: str
    result: Any
    total: int | None = None
    next: int | None = None
    time: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict)
    http_status: int = 200


@dataclass
class BatchResult:
    results: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)  # name -> {"error": code, "error_description": text}
    totals: dict = field(default_factory=dict)
    nexts: dict = field(default_factory=dict)
    times: dict = field(default_factory=dict)
    time: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict)


# --- parsing (pure, tested against shared/bitrix24/samples) --------------------------------------


def _as_map(value) -> dict:
    """Batch sections: an empty one is `[]`, a list result is indexed by position."""
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    return {}


def decode_body(http_status: int, content: bytes, *, method: str | None = None) -> Any:
    """The JSON document of an answer, or OutcomeUnknown if it is not JSON."""
    try:
        return json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise OutcomeUnknown(
            "ERROR_UNPARSEABLE_ANSWER",
            f"The portal answered HTTP {http_status} with a body that is not JSON.",
            http_status=http_status,
            method=method,
        ) from None


def error_from_body(http_status: int, body: Any, *, method: str | None = None) -> BitrixError | None:
    """The error an answer carries (v2, REST 3.0 or OAuth server shape), or None on success."""
    if isinstance(body, dict) and "error" in body:
        err = body["error"]
        validation = None
        if isinstance(err, dict):  # REST 3.0
            code = str(err.get("code") or f"HTTP_{http_status}")
            description = str(err.get("message") or "")
            validation = err.get("validation") or None
        else:
            code = str(err or f"HTTP_{http_status}")
            description = str(body.get("error_description") or "")
        cls = classify_error(http_status, code)
        kwargs = {"http_status": http_status, "method": method}
        if issubclass(cls, PortalError) and validation:
            kwargs["validation"] = validation
        return cls(code, description, **kwargs)
    if http_status >= 400 or not isinstance(body, dict) or "result" not in body:
        cls = classify_error(http_status, None)
        if http_status < 400:
            cls = OutcomeUnknown
        return cls(
            "ERROR_UNEXPECTED_ANSWER" if http_status < 400 else f"HTTP_{http_status}",
            f"The portal answered HTTP {http_status} without a result.",
            http_status=http_status,
            method=method,
        )
    return None


def _int_or_none(value) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def call_result(body: dict, *, method: str, http_status: int = 200) -> CallResult:
    return CallResult(
        method=method,
        result=body.get("result"),
        total=_int_or_none(body.get("total")),
        next=_int_or_none(body.get("next")),
        time=body.get("time") if isinstance(body.get("time"), dict) else {},
        raw=body,
        http_status=http_status,
    )


def batch_result(body: dict) -> BatchResult:
    inner = body.get("result") if isinstance(body.get("result"), dict) else {}
    errors = {}
    for name, err in _as_map(inner.get("result_error")).items():
        if isinstance(err, dict):
            errors[name] = {
                "error": str(err.get("error", "")),
                "error_description": str(err.get("error_description", "")),
            }
        else:
            errors[name] = {"error": str(err), "error_description": ""}
    return BatchResult(
        results=_as_map(inner.get("result")),
        errors=errors,
        totals={k: _int_or_none(v) for k, v in _as_map(inner.get("result_total")).items()},
        nexts={k: _int_or_none(v) for k, v in _as_map(inner.get("result_next")).items()},
        times=_as_map(inner.get("result_time")),
        time=body.get("time") if isinstance(body.get("time"), dict) else {},
        raw=body,
    )


# --- method names and addresses ----------------------------------------------------------------


def normalize_method(method: str) -> str:
    """The name as sent: trimmed, without a `.json` suffix; refused unless it is a plain dotted
    name (it goes into the URL path)."""
    if not isinstance(method, str):
        raise InvalidCall("INVALID_METHOD", "The method name must be a string.")
    name = method.strip()
    if name.lower().endswith(".json"):
        name = name[: -len(".json")]
    if not _METHOD_NAME.fullmatch(name) or len(name) > 128:
        raise InvalidCall("INVALID_METHOD", "The method name is not a valid Bitrix24 method name.")
    return name


def is_rest3_only(method: str) -> bool:
    """True for a method documented only for REST 3.0 (apps.policy.catalog; v2 if unknown)."""
    try:
        from apps.policy.catalog import lookup
    except ImportError:
        return False
    try:
        info = lookup(method)
    except Exception:  # noqa: BLE001 - the catalog is advisory here; v2 is the safe default
        logger.warning("method catalog lookup failed for %s", method, exc_info=True)
        return False
    return bool(info is not None and getattr(info, "rest3", False) and not getattr(info, "v2", True))


def rest_root(base_url: str) -> str:
    return base_url.rstrip("/") + "/rest/"


def build_url(*, base_url: str, method: str, rest3: bool, webhook: tuple[str, str] | None) -> str:
    """The address of a call (FACTS §1). Contains the webhook code: never log it."""
    root = rest_root(base_url) + ("api/" if rest3 else "")
    if webhook is not None:
        user_id, code = webhook
        return f"{root}{user_id}/{code}/{method}"
    return f"{root}{method}"


# --- operating time (per process memory of the last reset time seen) -----------------------------

_operating_reset: dict[tuple[int, str], float] = {}


def _note_time(portal_id: int, method: str, time_info: dict | None) -> None:
    if not isinstance(time_info, dict):
        return
    reset_at = time_info.get("operating_reset_at")
    try:
        if reset_at is not None:
            _operating_reset[(portal_id, method.lower())] = float(reset_at)
    except (TypeError, ValueError):
        pass


def _hold_until(portal_id: int, method: str, time_info: dict | None) -> float:
    """Unix time until which a method refused with OPERATION_TIME_LIMIT should be held."""
    now = time.time()
    candidates = []
    if isinstance(time_info, dict) and time_info.get("operating_reset_at") is not None:
        try:
            candidates.append(float(time_info["operating_reset_at"]))
        except (TypeError, ValueError):
            pass
    if not candidates and (portal_id, method.lower()) in _operating_reset:
        candidates.append(_operating_reset[(portal_id, method.lower())])
    until = max(candidates) if candidates else 0.0
    if until <= now:
        until = now + DEFAULT_OPERATING_WINDOW
    return min(until, now + 2 * DEFAULT_OPERATING_WINDOW)


# --- raw HTTP ---------------------------------------------------------------------------------------


def _root_cause(exc: BaseException) -> BaseException:
    seen = set()
    while True:
        nxt = getattr(exc, "reason", None) or exc.__cause__ or exc.__context__
        if nxt is None or id(nxt) in seen or nxt is exc:
            return exc
        seen.add(id(exc))
        exc = nxt


def _never_sent(exc: requests.ConnectionError) -> bool:
    """Connection refused, DNS failure, connect timeout: the request never left."""
    import urllib3.exceptions as u3

    if isinstance(exc, requests.ConnectTimeout):
        return True
    cause = _root_cause(exc)
    if isinstance(cause, (u3.NewConnectionError, u3.NameResolutionError, u3.ConnectTimeoutError)):
        return True
    if isinstance(cause, (ConnectionRefusedError,)):
        return True
    import socket

    return isinstance(cause, socket.gaierror)


def http_send(
    http_method: str,
    url: str,
    *,
    json_body: Any = None,
    params: dict | None = None,
    method: str,
    label: str,
    secrets: tuple[str, ...] = (),
    headers: dict | None = None,
) -> requests.Response:
    """One request, no redirects, timeouts set. Network failures become NotSent (the request
    never left) or OutcomeUnknown (it may have arrived). `label` (the portal slug) and `method`
    are what gets logged."""
    session = get_session()
    request_headers = dict(headers or {})
    data = None
    if json_body is not None:
        data = json.dumps(json_body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        request_headers["Content-Type"] = "application/json; charset=utf-8"
    try:
        response = session.request(
            http_method,
            url,
            data=data,
            params=params,
            headers=request_headers,
            timeout=timeouts(),
            allow_redirects=False,
        )
    except requests.ConnectionError as exc:
        if _never_sent(exc):
            logger.warning("bitrix %s %s: connection failed before sending (%s)", label, method, type(exc).__name__)
            raise NotSent(
                "CONNECTION_FAILED",
                f"Could not connect to the portal ({type(_root_cause(exc)).__name__}).",
                retry_after=5.0,
                method=method,
            ) from None
        logger.warning("bitrix %s %s: connection broken after sending (%s)", label, method, type(exc).__name__)
        raise OutcomeUnknown(
            "CONNECTION_BROKEN",
            f"The connection broke after the request was sent ({type(_root_cause(exc)).__name__}).",
            method=method,
        ) from None
    except requests.Timeout:
        # ConnectTimeout is a ConnectionError and handled above: this is a read timeout.
        logger.warning("bitrix %s %s: read timeout", label, method)
        raise OutcomeUnknown("READ_TIMEOUT", "No answer within the read timeout.", method=method) from None
    except requests.RequestException as exc:
        logger.warning("bitrix %s %s: request failed (%s)", label, method, type(exc).__name__)
        raise OutcomeUnknown(
            "REQUEST_FAILED", f"The request failed ({type(exc).__name__}).", method=method
        ) from None
    if response.status_code in (301, 302, 303, 307, 308):
        location = redact(response.headers.get("Location", ""), secrets)
        logger.error("bitrix %s %s: portal moved (HTTP %s)", label, method, response.status_code)
        raise PortalMoved(
            "PORTAL_MOVED",
            f"The portal answered HTTP {response.status_code} (moved); the call was not repeated.",
            http_status=response.status_code,
            location=location,
            method=method,
        )
    return response


def token_request(*, token_url: str, params: dict, label: str = "oauth") -> dict:
    """GET the OAuth token endpoint (FACTS §7). Returns the token document or raises the
    classified error (invalid_grant -> AuthFailed ...). The query holds the client secret: the
    URL is never logged."""
    response = http_send(
        "GET",
        token_url,
        params=params,
        method="oauth.token",
        label=label,
        secrets=tuple(str(v) for v in params.values() if v),
    )
    body = decode_body(response.status_code, response.content, method="oauth.token")
    if isinstance(body, dict) and "error" in body:
        err = error_from_body(response.status_code, body, method="oauth.token")
        raise err
    if response.status_code >= 400 or not isinstance(body, dict) or not body.get("access_token"):
        raise OutcomeUnknown(
            "ERROR_UNEXPECTED_ANSWER",
            f"The token endpoint answered HTTP {response.status_code} without a token.",
            http_status=response.status_code,
            method="oauth.token",
        )
    return body


def verify_access_token(*, client_endpoint: str, access_token: str, label: str) -> dict:
    """Call `app.info` with an access token at a portal's REST address (FACTS §10): the token
    is genuine if the portal answers with a result. Returns the result."""
    url = client_endpoint.rstrip("/") + "/app.info"
    response = http_send(
        "POST", url, json_body={"auth": access_token}, method="app.info", label=label, secrets=(access_token,)
    )
    body = decode_body(response.status_code, response.content, method="app.info")
    err = error_from_body(response.status_code, body, method="app.info")
    if err is not None:
        raise err
    return body.get("result") if isinstance(body.get("result"), dict) else {}


# --- the client -------------------------------------------------------------------------------------


class BitrixClient:
    """Calls one portal with its stored credential. Build it inside the worker (tasks get ids)."""

    def __init__(self, portal: Portal | int, *, use_limiter: bool = True):
        if not isinstance(portal, Portal):
            portal = Portal.objects.get(pk=portal)
        self.portal = portal
        self.use_limiter = use_limiter
        self._load_credential()

    # credential -------------------------------------------------------------------------------
    def _load_credential(self) -> None:
        try:
            cred = Credential.objects.get(portal_id=self.portal.pk)
        except Credential.DoesNotExist:
            cred = None
        self._credential_status = cred.status if cred else CredentialStatus.BROKEN
        self._credential_detail = cred.status_detail if cred else "no credential"
        self.auth_mode = self.portal.auth_mode
        self._webhook: tuple[str, str] | None = None
        self._access_token = ""
        if cred is None:
            return
        if self.auth_mode == AuthMode.WEBHOOK:
            user_id, code = str(cred.webhook_user_id or "").strip(), (cred.webhook_code or "").strip()
            # Both go into the URL path: anything but plain ids and codes is refused.
            if _WEBHOOK_USER.fullmatch(user_id) and _WEBHOOK_CODE.fullmatch(code):
                self._webhook = (user_id, code)
        else:
            self._access_token = cred.access_token or ""

    @property
    def _secrets(self) -> tuple[str, ...]:
        return tuple(s for s in ((self._webhook[1] if self._webhook else ""), self._access_token) if s)

    def _check_credential(self, method: str) -> None:
        if self._credential_status == CredentialStatus.BROKEN:
            raise AuthFailed(
                "CREDENTIAL_BROKEN",
                f"The portal's credential is marked broken ({self._credential_detail}); re-authorise it.",
                method=method,
            )
        if self.auth_mode == AuthMode.WEBHOOK and self._webhook is None:
            raise AuthFailed(
                "CREDENTIAL_MISSING", "The portal has no valid webhook user id and code.", method=method
            )
        if self.auth_mode == AuthMode.OAUTH and not self._access_token:
            raise AuthFailed("CREDENTIAL_MISSING", "The portal has no OAuth access token.", method=method)

    # one HTTP exchange with limiter, refresh and holds --------------------------------------------
    def _exchange(self, *, method: str, params: Any, rest3: bool, held: list[str]) -> tuple[int, dict]:
        """Send one request (once more after a token refresh). Returns (status, body) for a
        success; raises the classified error otherwise."""
        portal = self.portal
        self._check_credential(method)
        limiter.method_block_check(portal_id=portal.pk, methods=held)
        refreshed = False
        while True:
            url = build_url(base_url=portal.base_url, method=method, rest3=rest3, webhook=self._webhook)
            body = self._body(params)
            if self.use_limiter:
                limiter.limiter_acquire(portal_id=portal.pk, rate=portal.rate_per_second, burst=portal.burst)
            started = time.monotonic()
            try:
                response = http_send(
                    "POST", url, json_body=body, method=method, label=portal.slug, secrets=self._secrets
                )
            except NotSent:
                if self.use_limiter:
                    limiter.limiter_release(portal_id=portal.pk, rate=portal.rate_per_second)
                raise
            elapsed = time.monotonic() - started
            status = response.status_code
            data = decode_body(status, response.content, method=method)
            err = error_from_body(status, data, method=method)
            logger.info(
                "bitrix %s %s -> HTTP %s%s in %.3fs",
                portal.slug, method, status, f" {err.code}" if err else "", elapsed,
            )
            if err is None:
                return status, data
            if (
                err.code in REFRESH_CODES
                and self.auth_mode == AuthMode.OAUTH
                and not refreshed
            ):
                self._refresh()
                refreshed = True
                continue
            raise self._handle_error(err, method=method, body=data)

    def _body(self, params: Any) -> dict:
        if params is None:
            params = {}
        if isinstance(params, (list, tuple)):
            params = {str(i): v for i, v in enumerate(params)}
        if not isinstance(params, dict):
            raise InvalidCall("INVALID_PARAMS", "params must be a JSON object (or a list of positional values).")
        # The credential is ours to choose: a caller's `auth` never reaches the portal.
        params = {k: v for k, v in params.items() if k != "auth"}
        if self.auth_mode == AuthMode.OAUTH:
            return {**params, "auth": self._access_token}
        return params

    def _refresh(self) -> None:
        from .oauth import credential_refresh

        self._access_token = credential_refresh(portal_id=self.portal.pk, failed_access_token=self._access_token)

    def _handle_error(self, err: BitrixError, *, method: str, body: Any) -> BitrixError:
        portal = self.portal
        if err.code == "QUERY_LIMIT_EXCEEDED":
            if self.use_limiter:
                limiter.limiter_saturate(portal_id=portal.pk, rate=portal.rate_per_second, burst=portal.burst)
            err.retry_after = max(1.0, 1.0 / max(portal.rate_per_second, 0.01))
            logger.warning("bitrix %s %s: QUERY_LIMIT_EXCEEDED", portal.slug, method)
        elif isinstance(err, WaitForReset):
            until = _hold_until(portal.pk, method, body.get("time") if isinstance(body, dict) else None)
            limiter.method_block_set(
                portal_id=portal.pk,
                method=method.lower(),
                until=dt.datetime.fromtimestamp(until, tz=dt.UTC),
            )
            err.retry_after = max(0.0, until - time.time())
            logger.warning("bitrix %s %s: OPERATION_TIME_LIMIT, held %.0f s", portal.slug, method, err.retry_after)
        elif isinstance(err, AuthFailed):
            from .oauth import credential_mark_broken

            credential_mark_broken(portal_id=portal.pk, code=err.code, detail=err.description)
            self._credential_status = CredentialStatus.BROKEN
        return err

    # public API ----------------------------------------------------------------------------
    def call(self, method: str, params: dict | None = None, *, rest3: bool | None = None) -> CallResult:
        name = normalize_method(method)
        if name.lower() == "batch":
            raise InvalidCall("INVALID_CALL", "Use BitrixClient.batch() for batch.")
        if rest3 is None:
            rest3 = is_rest3_only(name)
        status, body = self._exchange(method=name, params=params, rest3=rest3, held=[name.lower()])
        _note_time(self.portal.pk, name, body.get("time"))
        return call_result(body, method=name, http_status=status)

    def batch(self, commands: list[tuple[str, str, dict]], *, halt: bool = True) -> BatchResult:
        if not commands:
            raise InvalidCall("INVALID_CALL", "A batch needs at least one command.")
        if len(commands) > MAX_BATCH:
            raise BatchTooLong(
                "ERROR_BATCH_LENGTH_EXCEEDED",
                f"A batch holds at most {MAX_BATCH} commands; got {len(commands)}.",
            )
        cmd: dict[str, str] = {}
        sub_methods: dict[str, str] = {}
        for entry in commands:
            try:
                name, method, params = entry
            except (TypeError, ValueError):
                raise InvalidCall("INVALID_CALL", "Each batch command is (name, method, params).") from None
            if not isinstance(name, str) or not _COMMAND_NAME.fullmatch(name):
                raise InvalidCall("INVALID_CALL", f"Bad batch command name {str(name)[:64]!r}.")
            if name in cmd:
                raise InvalidCall("INVALID_CALL", f"Duplicate batch command name {name!r}.")
            method = normalize_method(method)
            if method.lower() == "batch":
                raise InvalidCall("ERROR_BATCH_METHOD_NOT_ALLOWED", "A batch may not contain a batch.")
            if params is not None and not isinstance(params, (dict, list, tuple)):
                raise InvalidCall("INVALID_PARAMS", f"params of {name!r} must be an object.")
            if isinstance(params, dict):
                params = {k: v for k, v in params.items() if k != "auth"}
            cmd[name] = batch_command(method, params)
            sub_methods[name] = method
        # The outer batch does not count against operating time; each sub-call counts for its method.
        _status, body = self._exchange(
            method="batch",
            params={"halt": 1 if halt else 0, "cmd": cmd},
            rest3=False,
            held=sorted({m.lower() for m in sub_methods.values()}),
        )
        result = batch_result(body)
        for name, method in sub_methods.items():
            _note_time(self.portal.pk, method, result.times.get(name))
            err = result.errors.get(name)
            if err and classify_error(None, err["error"]) is WaitForReset:
                until = _hold_until(self.portal.pk, method, result.times.get(name))
                limiter.method_block_set(
                    portal_id=self.portal.pk,
                    method=method.lower(),
                    until=dt.datetime.fromtimestamp(until, tz=dt.UTC),
                )
        return result

    def run_steps(self, steps: list[dict]) -> dict:
        """Run a plan's steps: one step is a plain call, several are one batch with halt=1.

        Returns `{"steps": {name: {"result", "error", "total", "next"}}}`; `error` is
        `{"error": code, "error_description": text}` for a step the portal refused (a PortalError
        of a single call is recorded the same way as a batch sub-error). A step that did not run
        (after a failing one, halt=1) has neither result nor error. Transport, limit and auth
        errors raise (NotSent, WaitForReset, OutcomeUnknown, AuthFailed, PortalMoved). A batch
        whose first command was refused with QUERY_LIMIT_EXCEEDED / OPERATION_TIME_LIMIT before
        anything ran raises NotSent/WaitForReset too, so the caller may retry it whole.
        """
        if not steps:
            raise InvalidCall("INVALID_CALL", "No steps.")
        named = []
        for index, step in enumerate(steps):
            if not isinstance(step, dict) or "method" not in step:
                raise InvalidCall("INVALID_CALL", f"Step {index} needs a method.")
            named.append((str(step.get("name") or f"step{index}"), step["method"], step.get("params") or {}))
        if len(named) == 1:
            name, method, params = named[0]
            entry = {"result": None, "error": None, "total": None, "next": None}
            try:
                res = self.call(method, params)
            except PortalMoved:
                raise
            except PortalError as err:
                entry["error"] = {"error": err.code, "error_description": err.description}
            else:
                entry.update(result=res.result, total=res.total, next=res.next)
            return {"steps": {name: entry}}

        result = self.batch(named, halt=True)
        out = {}
        for name, _method, _params in named:
            out[name] = {
                "result": result.results.get(name),
                "error": result.errors.get(name),
                "total": result.totals.get(name),
                "next": result.nexts.get(name),
            }
        first_name = named[0][0]
        first_error = result.errors.get(first_name)
        if first_error and not result.results:
            cls = classify_error(None, first_error["error"])
            if issubclass(cls, NotSent):
                if issubclass(cls, WaitForReset):
                    retry_after = _hold_until(self.portal.pk, named[0][1], result.times.get(first_name)) - time.time()
                else:
                    retry_after = max(1.0, 1.0 / max(self.portal.rate_per_second, 0.01))
                raise cls(
                    first_error["error"], first_error["error_description"], retry_after=retry_after,
                    method=normalize_method(named[0][1]),
                )
        return {"steps": out}
