"""BitrixClient: calls one portal with its stored credential.

    client = BitrixClient(portal)            # or a portal id; the credential is decrypted here
    client.call("crm.lead.get", {"id": 5})   # -> CallResult
    client.batch([("a", "crm.lead.get", {"id": 5})], halt=True)   # -> BatchResult
    client.run_steps([{"name": "a", "method": "crm.lead.get", "params": {"id": 5}}])

Each request takes one slot of the portal's shared leaky bucket and respects the per-method
operating-time holds (apps.bitrix.limiter), goes to the address apps.bitrix.address builds, is
sent by apps.bitrix.http and read by apps.bitrix.envelope. An OAuth token the portal calls expired
is refreshed once (apps.bitrix.oauth); a credential the portal rejects is marked broken.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from apps.policy.errors import PolicyForbidden, PolicyInputError
from apps.policy.risk import READ, classify
from apps.portals.models import AuthMode, Credential, CredentialStatus, Portal

from . import limiter
from .address import build_url, is_rest3_only, method_path
from .envelope import BatchResult, CallResult, batch_result, call_result, decode_body, error_from_body
from .errors import (
    REFRESH_CODES,
    AuthFailed,
    BatchTooLong,
    BitrixError,
    InvalidCall,
    NotSent,
    PortalError,
    PortalMoved,
    WaitForReset,
    classify_error,
)
from .http import http_send, token_request, verify_access_token
from .oauth import credential_mark_broken, credential_refresh
from .phpquery import batch_command

__all__ = [
    "BitrixClient",
    "MAX_BATCH",
    # Older import paths of names that live elsewhere now (apps.portals.oauth imports these two).
    "token_request",
    "verify_access_token",
]

logger = logging.getLogger(__name__)

MAX_BATCH = 50

_COMMAND_NAME = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_WEBHOOK_USER = re.compile(r"[0-9]{1,12}")
_WEBHOOK_CODE = re.compile(r"[A-Za-z0-9_\-]{1,128}")


class BitrixClient:
    """Calls one portal with its stored credential. Build it inside the worker (tasks get ids)."""

    def __init__(self, portal: Portal | int, *, use_limiter: bool = True, credential: Credential | None = None,
                 auth_connector: str = ""):
        """`credential`: the portal's credential row just read with it (a caller's
        `select_related("portal__credential")`), saving a query; by default it is read here.
        `auth_connector`: the source key our offline event bindings use; every write this client
        sends carries it, so the portal does not queue our own changes back to us (FACTS §11)."""
        if not isinstance(portal, Portal):
            portal = Portal.objects.get(pk=portal)
        self.portal = portal
        self.use_limiter = use_limiter
        self.auth_connector = auth_connector
        self._load_credential(credential)

    # --- public API ------------------------------------------------------------------------------

    def call(self, method: str, params: dict | None = None, *, rest3: bool | None = None,
             reserved: bool = False) -> CallResult:
        """One method call. `rest3` forces the REST 3.0 (True) or v2 (False) address; by default
        a method documented only for REST 3.0 goes to `/rest/api/`. `reserved` as for `batch`."""
        name = method_path(method)
        if name.lower() == "batch":
            if reserved:
                self.release_reserved_slot()
            raise InvalidCall("INVALID_CALL", "Use BitrixClient.batch() for batch.")
        if rest3 is None:
            rest3 = is_rest3_only(name)
        if not rest3:
            params = self._marked(name, params)
        status, body = self._exchange(method=name, params=params, rest3=rest3, held=[name.lower()],
                                      reserved=reserved)
        limiter.operating_time_seen(portal_id=self.portal.pk, method=name, time_info=body.get("time"))
        return call_result(body, method=name, http_status=status)

    def batch(self, commands: list[tuple[str, str, dict]], *, halt: bool = True, reserved: bool = False) -> BatchResult:
        """One v2 `batch` request of (name, method, params) commands (at most MAX_BATCH): one slot
        of the portal's bucket. `reserved`: the caller already holds that slot
        (`limiter.limiter_reserve`) and has left out the methods held until their operating time
        resets (`limiter.methods_held`), so neither is done here; the slot is given back if
        nothing was sent."""
        try:
            cmd, sub_methods = self._batch_commands(commands)
        except BitrixError:
            if reserved:
                self.release_reserved_slot()
            raise
        # The outer batch does not count against operating time; each sub-call counts for its method.
        _status, body = self._exchange(
            method="batch",
            params={"halt": 1 if halt else 0, "cmd": cmd},
            rest3=False,
            held=sorted({m.lower() for m in sub_methods.values()}),
            reserved=reserved,
        )
        result = batch_result(body)
        for name, method in sub_methods.items():
            limiter.operating_time_seen(portal_id=self.portal.pk, method=method, time_info=result.times.get(name))
            err = result.errors.get(name)
            if err and classify_error(None, err["error"]) is WaitForReset:
                limiter.method_block_hold(portal_id=self.portal.pk, method=method, time_info=result.times.get(name))
        return result

    def run_steps(self, steps: list[dict], *, reserved: bool = False) -> dict:
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
            return {"steps": {name: self._run_one(method, params, reserved=reserved)}}

        result = self.batch(named, halt=True, reserved=reserved)
        self._raise_if_batch_never_ran(result, first=named[0])
        return {
            "steps": {
                name: {
                    "result": result.results.get(name),
                    "error": result.errors.get(name),
                    "total": result.totals.get(name),
                    "next": result.nexts.get(name),
                }
                for name, _method, _params in named
            }
        }

    # --- steps and batches -------------------------------------------------------------------------

    def _run_one(self, method: str, params: Any, *, reserved: bool = False) -> dict:
        """A single step: the portal's refusal (a PortalError) is the step's error, not raised."""
        entry = {"result": None, "error": None, "total": None, "next": None}
        try:
            res = self.call(method, params, reserved=reserved)
        except PortalMoved:
            raise
        except PortalError as err:
            entry["error"] = {"error": err.code, "error_description": err.description}
        else:
            entry.update(result=res.result, total=res.total, next=res.next)
        return entry

    def _raise_if_batch_never_ran(self, result: BatchResult, *, first: tuple[str, str, Any]) -> None:
        """A batch whose first command was refused before anything ran may be retried whole."""
        first_name, first_method = first[0], first[1]
        first_error = result.errors.get(first_name)
        if not first_error or result.results:
            return
        cls = classify_error(None, first_error["error"])
        if not issubclass(cls, NotSent):
            return
        if issubclass(cls, WaitForReset):
            reset_at = limiter.operating_time_reset_at(
                portal_id=self.portal.pk, method=first_method, time_info=result.times.get(first_name)
            )
            retry_after = reset_at - time.time()
        else:
            retry_after = max(1.0, 1.0 / max(self.portal.rate_per_second, 0.01))
        raise cls(
            first_error["error"], first_error["error_description"], retry_after=retry_after,
            method=method_path(first_method),
        )

    def _marked(self, method: str, params: Any) -> Any:
        """`params` with our `auth_connector` added when this is a write (a v2 call with named
        parameters that the risk classifier does not call a read; a method it cannot classify
        counts as a write). A caller's own `auth_connector` is left as it is."""
        if not self.auth_connector or not isinstance(params, (dict, type(None))):
            return params
        if params and "auth_connector" in params:
            return params
        try:
            risk = classify(method, params)
        except (PolicyInputError, PolicyForbidden):  # unclassifiable: treated as a write (fail closed)
            risk = None
        if risk == READ:
            return params
        return {**(params or {}), "auth_connector": self.auth_connector}

    def _batch_commands(self, commands: list) -> tuple[dict[str, str], dict[str, str]]:
        """Check and encode batch commands: ({name: "method?query"}, {name: method})."""
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
            method = method_path(method)
            if method.lower() == "batch":
                raise InvalidCall("ERROR_BATCH_METHOD_NOT_ALLOWED", "A batch may not contain a batch.")
            if params is not None and not isinstance(params, (dict, list, tuple)):
                raise InvalidCall("INVALID_PARAMS", f"params of {name!r} must be an object.")
            if isinstance(params, dict):
                params = self._marked(method, {k: v for k, v in params.items() if k != "auth"})
            cmd[name] = batch_command(method, params)
            sub_methods[name] = method
        return cmd, sub_methods

    # --- one HTTP exchange with limiter, refresh and holds -----------------------------------------

    def _exchange(self, *, method: str, params: Any, rest3: bool, held: list[str],
                  reserved: bool = False) -> tuple[int, dict]:
        """Send one request (once more after a token refresh). Returns (status, body) for a
        success; raises the classified error otherwise. `reserved`: the first send's slot is
        already taken by the caller."""
        portal = self.portal
        try:
            self._check_credential(method)
            if not reserved:  # a caller holding a slot checked the holds when it reserved it
                limiter.method_block_check(portal_id=portal.pk, methods=held)
        except BitrixError:  # nothing was sent: give the caller's slot back
            if reserved:
                self.release_reserved_slot()
            raise
        refreshed = False
        while True:
            url = build_url(base_url=portal.base_url, method=method, rest3=rest3, webhook=self._webhook)
            try:
                body = self._body(params)
            except BitrixError:
                if reserved:
                    self.release_reserved_slot()
                raise
            if self.use_limiter and not reserved:
                limiter.limiter_acquire(portal_id=portal.pk, rate=portal.rate_per_second, burst=portal.burst)
            reserved = False  # a second send (after a token refresh) takes its own slot
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
            if err.code in REFRESH_CODES and self.auth_mode == AuthMode.OAUTH and not refreshed:
                self._access_token = credential_refresh(portal_id=portal.pk, failed_access_token=self._access_token)
                refreshed = True
                continue
            raise self._handle_error(err, method=method, body=data)

    def release_reserved_slot(self) -> None:
        """A slot the caller reserved for a request that is not going to be sent."""
        if self.use_limiter:
            limiter.limiter_release(portal_id=self.portal.pk, rate=self.portal.rate_per_second)

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

    def _handle_error(self, err: BitrixError, *, method: str, body: Any) -> BitrixError:
        """What a refusal changes here (the bucket, a hold, the credential); returns `err`."""
        portal = self.portal
        if err.code == "QUERY_LIMIT_EXCEEDED":
            if self.use_limiter:
                limiter.limiter_saturate(portal_id=portal.pk, rate=portal.rate_per_second, burst=portal.burst)
            err.retry_after = max(1.0, 1.0 / max(portal.rate_per_second, 0.01))
            logger.warning("bitrix %s %s: QUERY_LIMIT_EXCEEDED", portal.slug, method)
        elif isinstance(err, WaitForReset):
            until = limiter.method_block_hold(
                portal_id=portal.pk, method=method, time_info=body.get("time") if isinstance(body, dict) else None
            )
            err.retry_after = max(0.0, until - time.time())
            logger.warning("bitrix %s %s: OPERATION_TIME_LIMIT, held %.0f s", portal.slug, method, err.retry_after)
        elif isinstance(err, AuthFailed):
            credential_mark_broken(portal_id=portal.pk, code=err.code, detail=err.description)
            self._credential_status = CredentialStatus.BROKEN
        return err

    # --- the credential ----------------------------------------------------------------------------

    def _load_credential(self, cred: Credential | None = None) -> None:
        if cred is None or cred.portal_id != self.portal.pk:
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
        if self._credential_status != CredentialStatus.OK:  # broken, or revoked by an app uninstall
            raise AuthFailed(
                f"CREDENTIAL_{str(self._credential_status).upper()}",
                f"The portal's credential is {self._credential_status} ({self._credential_detail}); re-authorise it.",
                method=method,
            )
        if self.auth_mode == AuthMode.WEBHOOK and self._webhook is None:
            raise AuthFailed(
                "CREDENTIAL_MISSING", "The portal has no valid webhook user id and code.", method=method
            )
        if self.auth_mode == AuthMode.OAUTH and not self._access_token:
            raise AuthFailed("CREDENTIAL_MISSING", "The portal has no OAuth access token.", method=method)
