"""One REST call to the simulated portal, in the order a cloud portal applies its checks:

portal -> "Https required" (when the portal requires it) -> portal-wide switched error or 302
-> leaky bucket (503) -> credentials (401) -> method (404) -> scope (403) -> application context
-> per-call switched error -> REST 3.0 Idempotency-Key -> faults "before" -> operating-time check
(429) -> the method -> operating-time accounting -> faults "after" -> envelope with `time`.

`batch` (v2 `cmd`, REST 3.0 JSON array) counts once against the bucket; its sub-calls are
checked and counted against their own methods' operating time, the outer call is not.
"""

import contextvars
import dataclasses
import logging
import math
import re
import time
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import F

from . import clock, idempotency
from .errors import (
    FAULT_ERRORS,
    MOVED,
    SandboxError,
    expired_token,
    fault_error,
    https_required,
    insufficient_scope,
    internal_server_error,
    method_not_found,
    no_auth_found,
    portal_not_found,
    query_limit_exceeded,
    v3_error,
    wrong_auth_type,
)
from .limits import (
    Operating,
    bucket_admit,
    operating_blocked,
    operating_cost,
    operating_state,
)
from .methods import Ctx, MethodSpec, Outcome, iso
from .models import (
    FAULT_AFTER,
    SandboxMethodCount,
    SandboxOAuthToken,
    SandboxOperatingBucket,
    SandboxPortal,
    SandboxWebhook,
)
from .params import ParamsError, php_parse_query
from .registry import V2_METHODS, V3_METHODS
from .tx import portal_atomic

logger = logging.getLogger(__name__)

BATCH_MAX = 50
V2 = "v2"
V3 = "v3"


@dataclass
class Answer:
    status: int
    body: dict | list
    headers: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Caller:
    key: str  # what the operating-time limit is kept per: one webhook or one app
    user_id: int
    scopes: frozenset[str] | None  # None: every scope
    client_id: str | None = None  # the OAuth application; None for an incoming webhook


@dataclass(frozen=True)
class FaultPlan:
    latency: float = 0.0
    fail: bool = False
    timeout: float = 0.0
    after: bool = False


def method_registry_key(raw: str) -> str:
    """The registry key of a method name as it appears in a path or a batch command: trimmed,
    lower-cased (the docs spell names in more than one case, FACTS §1), `.json` suffix dropped."""
    name = (raw or "").strip().lower()
    if name.endswith(".json"):
        name = name[: -len(".json")]
    return name


def bind_positional(spec: MethodSpec, params):
    """Legacy methods take parameters by position (`0=123&1[POST_MESSAGE]=hi`, FACTS §1): give
    "0", "1", ... the names in `spec.args`. Other methods see the numeric keys as unknown names."""
    if not spec.args or not isinstance(params, dict):
        return params
    bound = dict(params)
    named = {str(k).lower() for k in params}
    for index, name in enumerate(spec.args):
        key = str(index)
        if key in bound and name.lower() not in named:
            bound[name] = bound.pop(key)
    return bound


def time_object(start: float, finish: float, processing: float, operating: Operating | None) -> dict:
    out = {
        "start": start,
        "finish": finish,
        "duration": max(0.0, finish - start),
        "processing": processing,
        "date_start": iso(start),
        "date_finish": iso(finish),
    }
    if operating is not None:
        # An integer Unix time, as in the docs' examples (samples/response_rest3_item.json).
        reset_at = operating.reset_at if operating.reset_at is not None else start + 600
        out["operating_reset_at"] = int(math.ceil(reset_at))
        out["operating"] = operating.seconds
    return out


def rest_call(
    *,
    slug: str,
    api: str,
    method: str,
    params,
    webhook_user_id: int | None = None,
    webhook_code: str | None = None,
    access_token: str | None = None,
    params_error: str | None = None,
    idempotency_key: str | None = None,
    secure: bool = True,
    moved_path: str = "",
) -> Answer:
    """Run one HTTP-level REST call and return the answer the portal would give.
    `idempotency_key`: the REST 3.0 `Idempotency-Key` header (v2 ignores it); `secure`: the call
    came over HTTPS; `moved_path`: the path after the portal's base URL (for the 302 fault)."""
    start = clock.now()
    perf = time.perf_counter()
    echo: dict = {}
    try:
        portal = SandboxPortal.objects.filter(slug=slug).first()
        if portal is None:
            raise portal_not_found()
        if portal.require_https and not secure:
            raise https_required()
        switched = _take_error_fault(portal, api, "portal", None)
        if switched == MOVED:
            return Answer(302, {}, {"Location": portal.moved_to.rstrip("/") + "/" + moved_path.lstrip("/")})
        if not bucket_admit(portal=portal):
            raise query_limit_exceeded()
        caller = _authenticate(portal, webhook_user_id, webhook_code, access_token)
        name = method_registry_key(method)
        spec = (V3_METHODS if api == V3 else V2_METHODS).get(name)
        if spec is None:
            raise method_not_found()
        if not _granted(spec, caller):
            raise _scope_error(api)
        if spec.app_only and caller.client_id is None:
            raise wrong_auth_type()
        _take_error_fault(portal, api, "call", name)
        if params_error is not None:
            raise _params_error(api, params_error)
        idem = None
        if api == V3 and idempotency_key is not None:
            idempotency.check_key(idempotency_key)
            echo = {idempotency.HEADER: idempotency_key}
            idem = {"portal": portal, "scope": f"{caller.key}|{caller.user_id}|{name}", "key": idempotency_key,
                    "digest": idempotency.body_hash(params)}
            stored = idempotency.stored_answer(**idem)
            if stored is not None:
                return Answer(stored[0], stored[1], {**echo, idempotency.REPLAYED: "true"})
        fault = _take_fault(portal, name)
        clock.sleep(fault.latency)
        if not fault.after:
            _apply_fault(fault)
        ctx = _ctx(portal, caller, api)
        if spec.is_batch:
            result = _run_batch(ctx, caller, api, params)  # the faults apply outside, as to any call
            outcome, operating = Outcome(result), None
        else:
            if api == V3 and not isinstance(params, dict):
                raise v3_error("VALIDATION_REQUESTVALIDATIONEXCEPTION", "Error during request object validation",
                               validation=[{"message": "The request body must be a JSON object", "field": "body"}])
            outcome, operating, _ = _execute(ctx, caller, spec, params)
        if fault.after:
            _apply_fault(fault)
        if outcome.raw:
            return Answer(200, outcome.result, dict(echo))
        body = {"result": outcome.result}
        if api == V2:
            if outcome.next is not None:
                body["next"] = outcome.next
            if outcome.total is not None:
                body["total"] = outcome.total
        body["time"] = time_object(start, clock.now(), time.perf_counter() - perf, operating)
        if idem is not None:
            idempotency.store_answer(**idem, status=200, body=body)
        return Answer(200, body, dict(echo))
    except SandboxError as exc:
        return Answer(exc.status, exc.v3_body() if api == V3 else exc.v2_body(), dict(echo))


# ---------------------------------------------------------------------------- steps


def _authenticate(portal: SandboxPortal, user_id: int | None, code: str | None, token: str | None) -> Caller:
    if code is not None:
        hook = SandboxWebhook.objects.filter(portal=portal, user_id=user_id or 0, code=code).first()
        if hook is None or (hook.expires_at is not None and clock.now() >= hook.expires_at):
            raise no_auth_found()
        scopes = frozenset(hook.scopes) if isinstance(hook.scopes, list) else None
        return Caller(f"webhook:{hook.pk}", hook.user_id, scopes)
    if not token or not isinstance(token, str):
        raise no_auth_found()
    row = SandboxOAuthToken.objects.select_related("client").filter(portal=portal, access_token=token).first()
    if row is None:
        raise no_auth_found()
    if clock.now() >= row.access_expires_at:
        raise expired_token()
    scopes = frozenset(row.client.scopes) if isinstance(row.client.scopes, list) else None
    return Caller(f"app:{row.client.client_id}", row.user_id, scopes, row.client.client_id)


def _ctx(portal: SandboxPortal, caller: Caller, api: str) -> Ctx:
    admins = portal.admin_user_ids if isinstance(portal.admin_user_ids, list) else []
    return Ctx(portal=portal, user_id=caller.user_id, api=api, caller=caller.key, client_id=caller.client_id,
               scopes=caller.scopes, is_admin=caller.user_id in admins)


def _granted(spec: MethodSpec, caller: Caller) -> bool:
    if "basic" in spec.scopes or caller.scopes is None:
        return True
    return any(scope in caller.scopes for scope in spec.scopes)


def _scope_error(api: str) -> SandboxError:
    if api == V3:
        return v3_error("INSUFFICIENTSCOPEEXCEPTION", "Insufficient scope for this method", status=403)
    return insufficient_scope()


def _params_error(api: str, message: str) -> SandboxError:
    if api == V3:
        return v3_error("INVALIDJSONEXCEPTION", message)
    return SandboxError("INVALID_REQUEST", message, status=400)


def _take_error_fault(portal: SandboxPortal, api: str, phase: str, method: str | None) -> str | None:
    """The fault switch: raise the switched-on system error if it applies to this phase, API and
    method (counting down `fault_error_remaining`); returns MOVED for the redirect."""
    key = portal.fault_error
    if not key or (key != MOVED and key not in FAULT_ERRORS):
        return None
    if key == MOVED:
        if phase != "portal" or not portal.moved_to:
            return None
    else:
        fault_phase = FAULT_ERRORS[key][3]
        if fault_phase != phase or (key == "ACCESSDENIEDEXCEPTION" and api != V3):
            return None
        methods = portal.fault_methods
        if phase == "call" and isinstance(methods, list) and method not in methods:
            return None
    with transaction.atomic():
        row = SandboxPortal.objects.select_for_update().get(pk=portal.pk)
        if row.fault_error != key or row.fault_error_remaining == 0:
            return None
        updates = {"faults_injected": F("faults_injected") + 1}
        if row.fault_error_remaining > 0:
            updates["fault_error_remaining"] = F("fault_error_remaining") - 1
            if row.fault_error_remaining == 1:
                updates["fault_error"] = ""
        SandboxPortal.objects.filter(pk=row.pk).update(**updates)
    if key == MOVED:
        return MOVED
    raise fault_error(key)


def _take_fault(portal: SandboxPortal, method: str) -> FaultPlan:
    """The injected faults for this call. The portal row this request read says whether a counted
    fault is armed; only then is the row locked and the fault counted down (a fault armed while
    the request runs applies from the next request, as if this one had come a moment earlier)."""
    methods = portal.fault_methods
    if isinstance(methods, list) and method not in methods:
        return FaultPlan()
    if portal.fault_5xx_remaining <= 0 and portal.fault_timeout_remaining <= 0:
        return FaultPlan(latency=portal.fault_latency, after=portal.fault_when == FAULT_AFTER)
    with transaction.atomic():
        row = SandboxPortal.objects.select_for_update().get(pk=portal.pk)
        methods = row.fault_methods
        if isinstance(methods, list) and method not in methods:
            return FaultPlan()
        fail = row.fault_5xx_remaining > 0
        timeout = 0.0
        if row.fault_timeout_remaining > 0 and row.fault_timeout_seconds > 0:
            timeout = row.fault_timeout_seconds
        updates = {}
        if fail:
            updates["fault_5xx_remaining"] = F("fault_5xx_remaining") - 1
        if timeout:
            updates["fault_timeout_remaining"] = F("fault_timeout_remaining") - 1
        if updates:
            updates["faults_injected"] = F("faults_injected") + 1
            SandboxPortal.objects.filter(pk=row.pk).update(**updates)
        return FaultPlan(latency=row.fault_latency, fail=fail, timeout=timeout, after=row.fault_when == FAULT_AFTER)


def _apply_fault(fault: FaultPlan) -> None:
    if fault.timeout:
        clock.sleep(fault.timeout)
        if not fault.after:
            # "before": the method never ran; whoever is still listening gets a server error.
            raise internal_server_error()
    if fault.fail:
        raise internal_server_error()


def _account(ctx: Ctx, caller: Caller, method: str, seconds: float) -> Operating:
    """A single call's accounting, as a batch's: its count and its operating seconds written in
    one transaction holding the portal row. Returns the operating time the answer reports."""
    tally = _BatchTally(ctx.portal, caller.key)
    tally.count(ctx.api, method)
    tally.spend(method, seconds)
    with portal_atomic():
        SandboxPortal.objects.select_for_update().filter(pk=ctx.portal.pk).first()
        tally.write()
    return operating_state(portal=ctx.portal, caller=caller.key, method=method)


class _BatchTally:
    """A batch's accounting, kept in memory while its transaction holds the portal row (every
    writer of the counters takes that lock, so nobody else moves them meanwhile) and written once
    at the end: calls per method, and operating seconds per (method, minute). Each sub-call is
    checked against the operating time its method had when the batch started plus what the
    batch's earlier sub-calls spent, exactly what the database would say at that moment."""

    def __init__(self, portal: SandboxPortal, caller: str):
        self.portal, self.caller = portal, caller
        self.live: dict[str, float] = {}
        self.spent: dict[tuple[str, int], list[float]] = {}  # (method, minute) -> [first_at, seconds]
        self.calls: dict[tuple[str, str], int] = {}

    def blocked(self, method: str) -> bool:
        if method not in self.live:
            self.live[method] = operating_state(portal=self.portal, caller=self.caller, method=method).seconds
        return self.live[method] > self.portal.operating_limit

    def count(self, api: str, method: str) -> None:
        self.calls[(api, method)] = self.calls.get((api, method), 0) + 1

    def spend(self, method: str, seconds: float) -> None:
        now = clock.now()
        entry = self.spent.setdefault((method, int(now // 60)), [now, 0.0])
        entry[1] += seconds
        self.live[method] = self.live.get(method, 0.0) + seconds

    def write(self) -> None:
        """Add to the rows, creating those missing (the caller holds the portal row: no other
        writer can create them meanwhile)."""
        for (api, method), calls in self.calls.items():
            counted = SandboxMethodCount.objects.filter(portal=self.portal, api=api, method=method)
            if not counted.update(count=F("count") + calls):
                SandboxMethodCount.objects.create(portal=self.portal, api=api, method=method, count=calls)
        for (method, minute), (first_at, seconds) in self.spent.items():
            bucket = SandboxOperatingBucket.objects.filter(portal=self.portal, caller=self.caller, method=method,
                                                          minute=minute)
            if not bucket.update(seconds=F("seconds") + seconds):
                SandboxOperatingBucket.objects.create(portal=self.portal, caller=self.caller, method=method,
                                                      minute=minute, first_at=first_at, seconds=seconds)


def _run_batch(ctx: Ctx, caller: Caller, api: str, params):
    """A batch's sub-calls in one transaction holding the portal row: one commit, and the
    accounting written once (`_BatchTally`) instead of per sub-call. Each sub-call still does its
    own checks and writes, in order; its error is its own (caught inside)."""
    with portal_atomic():
        SandboxPortal.objects.select_for_update().filter(pk=ctx.portal.pk).first()
        tally = _BatchTally(ctx.portal, caller.key)
        token = _tally.set(tally)
        try:
            result = _batch_v3(ctx, caller, params) if api == V3 else _batch_v2(ctx, caller, params)
        finally:
            _tally.reset(token)
        tally.write()
    return result


_tally: contextvars.ContextVar[_BatchTally | None] = contextvars.ContextVar("sandbox_batch_tally", default=None)


def _execute(ctx: Ctx, caller: Caller, spec: MethodSpec, params) -> tuple[Outcome, Operating, float]:
    """Operating-time check, the method, accounting. Returns (outcome, operating, processing);
    inside a batch `operating` is None (a sub-call's `time` carries none)."""
    tally = _tally.get()
    if tally is not None:
        return _execute_in_batch(ctx, tally, spec, params)
    blocked, _ = operating_blocked(portal=ctx.portal, caller=caller.key, method=spec.name)
    if blocked:
        SandboxPortal.objects.filter(pk=ctx.portal.pk).update(
            operation_limit_refusals=F("operation_limit_refusals") + 1
        )
        raise _refuse_operating()
    perf = time.perf_counter()
    try:
        connector = params.get("auth_connector") if isinstance(params, dict) else None
        if isinstance(connector, str) and connector:
            ctx = dataclasses.replace(ctx, auth_connector=connector)
        outcome = spec.handler(ctx, bind_positional(spec, params))
    finally:
        cost = operating_cost(portal=ctx.portal, method=spec.name)
        state = _account(ctx, caller, spec.name, cost)
    return outcome, state, time.perf_counter() - perf


def _refuse_operating() -> SandboxError:
    # Only the code and the status are documented (limits.md): the client takes
    # `operating_reset_at` from its last successful answer.
    return SandboxError("OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit.", status=429)


def _execute_in_batch(ctx: Ctx, tally: _BatchTally, spec: MethodSpec, params) -> tuple[Outcome, None, float]:
    if tally.blocked(spec.name):
        SandboxPortal.objects.filter(pk=ctx.portal.pk).update(
            operation_limit_refusals=F("operation_limit_refusals") + 1
        )
        raise _refuse_operating()
    tally.count(ctx.api, spec.name)
    perf = time.perf_counter()
    try:
        connector = params.get("auth_connector") if isinstance(params, dict) else None
        if isinstance(connector, str) and connector:
            ctx = dataclasses.replace(ctx, auth_connector=connector)
        outcome = spec.handler(ctx, bind_positional(spec, params))
    finally:
        tally.spend(spec.name, operating_cost(portal=ctx.portal, method=spec.name))
    return outcome, None, time.perf_counter() - perf


# ---------------------------------------------------------------------------- batch (v2)

_REF_RE = re.compile(r"\$result\[([^\[\]]*)\]((?:\[[^\[\]]*\])*)")
_PATH_RE = re.compile(r"\[([^\[\]]*)\]")


def php_array_json(section: dict):
    """How PHP's json_encode renders an array: [] when empty, a list when keyed 0..n-1."""
    if not section:
        return []
    if list(section) == [str(i) for i in range(len(section))]:
        return list(section.values())
    return section


def _truthy(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "n")
    return bool(value)


def _resolve(results: dict, key: str, path: str):
    if key not in results:
        raise KeyError(key)
    value = results[key]
    for part in _PATH_RE.findall(path):
        if isinstance(value, list):
            value = value[int(part)]
        elif isinstance(value, dict):
            value = value[part]
        else:
            raise KeyError(part)
    return value


def _scalar(value) -> str:
    if value is True:
        return "1"
    if value is False or value is None:
        return ""
    return str(value)


def _substitute(value, results: dict):
    if isinstance(value, dict):
        return {k: _substitute(v, results) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, results) for v in value]
    if not isinstance(value, str) or "$result" not in value:
        return value
    whole = _REF_RE.fullmatch(value)
    if whole:
        try:
            resolved = _resolve(results, whole.group(1), whole.group(2))
        except (KeyError, IndexError, ValueError):
            return value
        return resolved if isinstance(resolved, dict | list) else _scalar(resolved)

    def replace(match: re.Match) -> str:
        try:
            resolved = _resolve(results, match.group(1), match.group(2))
        except (KeyError, IndexError, ValueError):
            return match.group(0)
        return _scalar(resolved)

    return _REF_RE.sub(replace, value)


def _batch_commands(cmd) -> list[tuple[str, str, str]]:
    """[(key, method, query)] from a `cmd` map or list; refuses >50 and nested batch up front."""
    if cmd in (None, ""):
        return []
    if isinstance(cmd, dict):
        items = [(str(k), v) for k, v in cmd.items()]
    elif isinstance(cmd, list):
        items = [(str(i), v) for i, v in enumerate(cmd)]
    else:
        raise SandboxError("INVALID_REQUEST", "Parameter 'cmd' must be array.", status=400)
    if len(items) > BATCH_MAX:
        raise SandboxError("ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded", status=400)
    commands = []
    for key, value in items:
        if not isinstance(value, str):
            raise SandboxError("INVALID_REQUEST", f"Command '{key}' must be a string.", status=400)
        method, _, query = value.partition("?")
        method = method_registry_key(method)
        if method == "batch":
            raise SandboxError("ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage", status=405)
        commands.append((key, method, query))
    return commands


def _batch_v2(ctx: Ctx, caller: Caller, params: dict) -> dict:
    cmd = params.get("cmd") if isinstance(params, dict) else None
    halt = _truthy(params.get("halt", 0)) if isinstance(params, dict) else False
    commands = _batch_commands(cmd)
    results, errors, totals, nexts, times = {}, {}, {}, {}, {}
    for key, method, query in commands:
        sub_start = clock.now()
        try:
            spec = V2_METHODS.get(method)
            if spec is None:
                raise method_not_found()
            if not _granted(spec, caller):
                raise insufficient_scope()
            if spec.app_only and caller.client_id is None:
                raise wrong_auth_type()
            try:
                sub_params = php_parse_query(query)
            except ParamsError as exc:
                raise SandboxError("INVALID_REQUEST", str(exc), status=400) from None
            sub_params.pop("auth", None)
            sub_params = _substitute(sub_params, results)
            outcome, _, processing = _execute(ctx, caller, spec, sub_params)
        except SandboxError as exc:
            errors[key] = {"error": exc.code, "error_description": exc.description}
            if halt:
                break
            continue
        results[key] = outcome.result
        if outcome.total is not None:
            totals[key] = outcome.total
        if outcome.next is not None:
            nexts[key] = outcome.next
        times[key] = time_object(sub_start, clock.now(), processing, None)
    return {
        "result": php_array_json(results),
        "result_error": php_array_json(errors),
        "result_total": php_array_json(totals),
        "result_next": php_array_json(nexts),
        "result_time": php_array_json(times),
    }


# ---------------------------------------------------------------------------- batch (REST 3.0)


def _batch_v3(ctx: Ctx, caller: Caller, params) -> list:
    if isinstance(params, dict) and not params:
        return []
    if not isinstance(params, list):
        raise v3_error("INVALIDSELECTEXCEPTION", "The batch body must be a JSON array of {method, query}")
    if len(params) > BATCH_MAX:
        raise SandboxError("ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded", status=400)
    calls = []
    for index, item in enumerate(params):
        if not isinstance(item, dict) or not isinstance(item.get("method"), str):
            raise v3_error("VALIDATION_REQUESTVALIDATIONEXCEPTION", "Error during request object validation",
                           validation=[{"message": "Each call needs a string `method`", "field": f"{index}.method"}])
        query = item.get("query", {})
        if not isinstance(query, dict):
            raise v3_error("VALIDATION_REQUESTVALIDATIONEXCEPTION", "Error during request object validation",
                           validation=[{"message": "`query` must be an object", "field": f"{index}.query"}])
        method = method_registry_key(item["method"])
        if method == "batch":
            raise SandboxError("ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage", status=405)
        calls.append((method, query))
    out = []
    for method, query in calls:
        try:
            spec = V3_METHODS.get(method)
            if spec is None:
                raise method_not_found()
            if not _granted(spec, caller):
                raise _scope_error(V3)
            if spec.app_only and caller.client_id is None:
                raise wrong_auth_type()
            outcome, _, _ = _execute(ctx, caller, spec, query)
        except SandboxError as exc:
            out.append(exc.v3_body())
            continue
        out.append(outcome.result)
    return out
