"""Public service API of the sandbox portal (HackSoft style: keyword-only, typed).

Setup: `sandbox_portal_ensure`, `sandbox_webhook_create`, `sandbox_oauth_client_create`,
`sandbox_oauth_issue`, `sandbox_oauth_code_issue`, `sandbox_set_limits`.
Test levers: `sandbox_set_faults`, `sandbox_clear_faults`, `sandbox_expire_tokens`,
`sandbox_reset_limits`; the fault switch `sandbox_set_fault`/`sandbox_clear_fault` (documented
system errors, a 302, "Https required"; also `manage.py sandbox_fault` and the admin).
Events: `sandbox_outgoing_webhook_create`, `sandbox_app_event`, `sandbox_application_token`
(apps bind handlers themselves with `event.bind`). Counters are read through `apps.sandbox.selectors`.
Protocol: `sandbox_rest_call` (one REST call) and `sandbox_oauth_token` (the token endpoint);
the views are thin adapters over these two.
"""

import math
import re
import secrets
import string

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F

from apps.core.exceptions import InvalidRequest, NotFound

from . import clock, events
from .dispatch import Answer, rest_call
from .errors import FAULT_ERRORS, MOVED
from .limits import operating_reset
from .models import (
    FAULT_AFTER,
    FAULT_BEFORE,
    SandboxEventHandler,
    SandboxOAuthClient,
    SandboxOAuthCode,
    SandboxOAuthToken,
    SandboxPortal,
    SandboxWebhook,
)
from .tokens import application_token, issue_token, random_string

CODE_LIFETIME = 30  # seconds an authorization code stays valid (FACTS §7)
_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_ALNUM = string.ascii_lowercase + string.digits

sandbox_rest_call = rest_call


def _finite_non_negative(name: str, value: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"{name} must be a number.", field=name) from None
    if not math.isfinite(number) or number < 0:
        raise InvalidRequest(f"{name} must be a finite number >= 0.", field=name)
    return number


def _fresh(portal: SandboxPortal) -> SandboxPortal:
    return SandboxPortal.objects.get(pk=portal.pk)


def sandbox_base_url() -> str:
    """Where the sandbox is served, for the endpoints in token answers issued outside a request."""
    return str(settings.SANDBOX_BASE_URL).rstrip("/")


# ---------------------------------------------------------------------------- portals, webhooks


def sandbox_portal_ensure(*, slug: str, rate: float = 2.0, burst: int = 50) -> SandboxPortal:
    """Create the portal if missing (with a stable random member_id); set its bucket settings."""
    if not isinstance(slug, str) or not _SLUG_RE.match(slug) or slug == "oauth":
        raise InvalidRequest("slug must be 1-64 lower-case letters, digits, '-' or '_' (not 'oauth').", field="slug")
    rate = _finite_non_negative("rate", rate)
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise InvalidRequest("burst must be a positive integer.", field="burst")
    try:
        with transaction.atomic():
            portal, _ = SandboxPortal.objects.get_or_create(slug=slug, defaults={
                "member_id": secrets.token_hex(16), "rate": rate, "burst": burst})
    except IntegrityError:  # created concurrently
        portal = SandboxPortal.objects.get(slug=slug)
    if portal.rate != rate or portal.burst != burst:
        SandboxPortal.objects.filter(pk=portal.pk).update(rate=rate, burst=burst)
        portal.rate, portal.burst = rate, burst
    return portal


def sandbox_webhook_create(
    *, portal: SandboxPortal, user_id: int = 1, scopes: list[str] | None = None, code: str | None = None
) -> tuple[str, str]:
    """An incoming webhook: returns (user_id, code) for `/rest/<user_id>/<code>/<method>`.
    `scopes=None` grants every scope; `basic` is always granted."""
    if isinstance(user_id, bool) or not isinstance(user_id, int) or user_id < 1:
        raise InvalidRequest("user_id must be a positive integer.", field="user_id")
    if scopes is not None and (not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes)):
        raise InvalidRequest("scopes must be a list of strings or None.", field="scopes")
    if code is None:
        code = random_string(16)
    if not isinstance(code, str) or not re.fullmatch(r"[A-Za-z0-9_]{1,64}", code):
        raise InvalidRequest("code must be 1-64 letters, digits or '_'.", field="code")
    SandboxWebhook.objects.update_or_create(portal=portal, user_id=user_id, code=code, defaults={"scopes": scopes})
    return str(user_id), code


# ---------------------------------------------------------------------------- OAuth


def sandbox_oauth_client_create(
    *, client_id: str | None = None, client_secret: str | None = None, scopes: list[str] | None = None
) -> tuple[str, str]:
    """An OAuth application known to the sandbox's oauth server; returns (client_id, client_secret)."""
    client_id = client_id or f"local.{secrets.token_hex(7)}.{secrets.randbelow(10**8):08d}"
    client_secret = client_secret or random_string(50, string.ascii_letters + string.digits)
    for name, value in (("client_id", client_id), ("client_secret", client_secret)):
        if not isinstance(value, str) or not (1 <= len(value) <= 128):
            raise InvalidRequest(f"{name} must be a string of 1-128 characters.", field=name)
    SandboxOAuthClient.objects.update_or_create(
        client_id=client_id, defaults={"client_secret": client_secret, "scopes": scopes}
    )
    return client_id, client_secret


def _client(client_id: str) -> SandboxOAuthClient:
    client = SandboxOAuthClient.objects.filter(client_id=client_id).first()
    if client is None:
        raise NotFound(f"No sandbox OAuth client {client_id!r}.")
    return client


def sandbox_oauth_issue(
    *, portal: SandboxPortal, client_id: str, lifetime: int | None = None, user_id: int = 1
) -> dict:
    """Issue a token pair as the token endpoint would (e.g. for an install callback).
    `lifetime` defaults to the portal's `token_lifetime` (3600 s unless changed)."""
    portal = _fresh(portal)
    lifetime = portal.token_lifetime if lifetime is None else lifetime
    if isinstance(lifetime, bool) or not isinstance(lifetime, int) or lifetime < 0:
        raise InvalidRequest("lifetime must be a non-negative integer.", field="lifetime")
    return issue_token(portal, _client(client_id), user_id, lifetime, sandbox_base_url())


def sandbox_oauth_code_issue(*, portal: SandboxPortal, client_id: str, user_id: int = 1) -> str:
    """An authorization code for `grant_type=authorization_code`, valid 30 s, usable once."""
    code = random_string(32)
    SandboxOAuthCode.objects.create(
        portal=portal, client=_client(client_id), code=code, user_id=user_id, expires_at=clock.now() + CODE_LIFETIME
    )
    return code


def _oauth_error(code: str, description: str, status: int = 400) -> tuple[int, dict]:
    return status, {"error": code, "error_description": description}


def sandbox_oauth_token(*, params: dict, base_url: str) -> tuple[int, dict]:
    """The token endpoint (plays oauth.bitrix.info/oauth/token/). Returns (HTTP status, body).
    Refresh tokens rotate: a used refresh token is answered with `invalid_grant`."""
    grant_type = params.get("grant_type")
    client_id, client_secret = params.get("client_id"), params.get("client_secret")
    if grant_type not in ("authorization_code", "refresh_token"):
        return _oauth_error("invalid_request", "grant_type must be authorization_code or refresh_token")
    if not isinstance(client_id, str) or not client_id:
        return _oauth_error("invalid_request", "client_id is missing")
    client = SandboxOAuthClient.objects.filter(client_id=client_id).first()
    if client is None:
        return _oauth_error("invalid_client", "Invalid client", 401)
    SandboxOAuthClient.objects.filter(pk=client.pk).update(token_calls=F("token_calls") + 1)
    if not isinstance(client_secret, str) or not secrets.compare_digest(client_secret, client.client_secret):
        return _oauth_error("invalid_client", "Invalid client", 401)
    secret_field = "code" if grant_type == "authorization_code" else "refresh_token"
    presented = params.get(secret_field)
    if not isinstance(presented, str) or not presented:
        return _oauth_error("invalid_request", f"{secret_field} is missing")
    model = SandboxOAuthCode if grant_type == "authorization_code" else SandboxOAuthToken
    lookup = {secret_field: presented}
    found = model.objects.filter(**lookup).select_related("portal").first()
    if found is None:
        return _oauth_error("invalid_grant", "Invalid grant")
    SandboxPortal.objects.filter(pk=found.portal_id).update(token_endpoint_calls=F("token_endpoint_calls") + 1)
    clock.sleep(found.portal.fault_token_latency)
    with transaction.atomic():
        row = model.objects.select_for_update().filter(pk=found.pk).first()
        now = clock.now()
        if grant_type == "authorization_code":
            if row is None or row.used or row.client_id != client.pk or now >= row.expires_at:
                return _oauth_error("invalid_grant", "Invalid grant")
            row.used = True
            row.save(update_fields=["used"])
        else:
            if row is None or row.refresh_used or row.client_id != client.pk or now >= row.refresh_expires_at:
                return _oauth_error("invalid_grant", "Invalid grant")
            row.refresh_used = True
            row.save(update_fields=["refresh_used"])
        portal = _fresh(row.portal)
        return 200, issue_token(portal, client, row.user_id, portal.token_lifetime, base_url,
                           refreshed=grant_type == "refresh_token")


def sandbox_expire_tokens(*, portal: SandboxPortal) -> int:
    """Make every current access token of the portal expired (refresh tokens stay valid)."""
    now = clock.now()
    return SandboxOAuthToken.objects.filter(portal=portal, access_expires_at__gt=now - 1).update(
        access_expires_at=now - 1
    )


# ---------------------------------------------------------------------------- limits, faults


def sandbox_set_limits(
    *,
    portal: SandboxPortal,
    rate: float | None = None,
    burst: int | None = None,
    operating_limit: float | None = None,
    default_cost: float | None = None,
    method_costs: dict[str, float] | None = None,
    token_lifetime: int | None = None,
) -> SandboxPortal:
    """Change the portal's limits; None leaves a setting as it is."""
    updates: dict = {}
    if rate is not None:
        updates["rate"] = _finite_non_negative("rate", rate)
    if burst is not None:
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise InvalidRequest("burst must be a positive integer.", field="burst")
        updates["burst"] = burst
    if operating_limit is not None:
        updates["operating_limit"] = _finite_non_negative("operating_limit", operating_limit)
    if default_cost is not None:
        updates["default_cost"] = _finite_non_negative("default_cost", default_cost)
    if method_costs is not None:
        if not isinstance(method_costs, dict):
            raise InvalidRequest("method_costs must be a dict of method -> seconds.", field="method_costs")
        updates["method_costs"] = {
            str(k).lower(): _finite_non_negative("method_costs", v) for k, v in method_costs.items()
        }
    if token_lifetime is not None:
        if isinstance(token_lifetime, bool) or not isinstance(token_lifetime, int) or token_lifetime < 0:
            raise InvalidRequest("token_lifetime must be a non-negative integer.", field="token_lifetime")
        updates["token_lifetime"] = token_lifetime
    if updates:
        SandboxPortal.objects.filter(pk=portal.pk).update(**updates)
    return _fresh(portal)


def sandbox_reset_limits(*, portal: SandboxPortal) -> None:
    """Empty the leaky bucket and forget all operating time."""
    SandboxPortal.objects.filter(pk=portal.pk).update(bucket_level=0.0, bucket_updated_at=clock.now())
    operating_reset(portal=portal)


def sandbox_set_faults(
    *,
    portal: SandboxPortal,
    latency: float = 0,
    fail_5xx: int = 0,
    timeout_seconds: float = 0,
    timeout_calls: int = 1,
    when: str = FAULT_BEFORE,
    methods: list[str] | None = None,
    token_latency: float = 0,
    expired: bool = False,
) -> SandboxPortal:
    """Replace the portal's faults.

    - `latency`: seconds slept before every answer (until cleared);
    - `fail_5xx`: the next N calls answer 500 INTERNAL_SERVER_ERROR;
    - `timeout_seconds` (with `timeout_calls`, default 1): the next N calls sleep that long, so
      the caller's read timeout fires;
    - `when="before"`: the method does not run (a timed-out call then answers 500);
      `when="after"`: the method runs and commits, then the answer is lost (500, or the sleep
      before a normal answer) - "the write happened but the answer was lost";
    - `methods`: only these methods (lower-case names, `batch` for a whole batch) get the
      5xx/timeout/latency faults; None means every method;
    - `token_latency`: seconds the token endpoint sleeps before answering;
    - `expired=True`: expire the current access tokens now (see `sandbox_expire_tokens`).
    """
    if when not in (FAULT_BEFORE, FAULT_AFTER):
        raise InvalidRequest("when must be 'before' or 'after'.", field="when")
    for name, value in (("fail_5xx", fail_5xx), ("timeout_calls", timeout_calls)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidRequest(f"{name} must be a non-negative integer.", field=name)
    if methods is not None and (not isinstance(methods, list) or not all(isinstance(m, str) for m in methods)):
        raise InvalidRequest("methods must be a list of method names or None.", field="methods")
    timeout_seconds = _finite_non_negative("timeout_seconds", timeout_seconds)
    SandboxPortal.objects.filter(pk=portal.pk).update(
        fault_latency=_finite_non_negative("latency", latency),
        fault_5xx_remaining=fail_5xx,
        fault_timeout_seconds=timeout_seconds,
        fault_timeout_remaining=timeout_calls if timeout_seconds > 0 else 0,
        fault_when=when,
        fault_methods=[m.strip().lower() for m in methods] if methods is not None else None,
        fault_token_latency=_finite_non_negative("token_latency", token_latency),
    )
    if expired:
        sandbox_expire_tokens(portal=portal)
    return _fresh(portal)


def sandbox_set_fault(
    *,
    portal: SandboxPortal,
    error: str,
    calls: int = -1,
    moved_to: str | None = None,
    require_https: bool | None = None,
) -> SandboxPortal:
    """The fault switch: the portal answers the documented system error `error` (a key of
    `errors.FAULT_ERRORS`, or "MOVED" for a 302 to `moved_to`) for the next `calls` calls
    (-1: until cleared); "" switches it off. `require_https`: plain-HTTP calls then get
    INVALID_REQUEST "Https required." (None leaves it as it is). `fault_methods` (see
    `sandbox_set_faults`) limits the per-call errors to some methods."""
    if error not in ("", MOVED, *FAULT_ERRORS):
        raise InvalidRequest(f"error must be one of: {', '.join([MOVED, *FAULT_ERRORS])} (or '' to clear).",
                             field="error")
    if isinstance(calls, bool) or not isinstance(calls, int) or calls < -1 or calls == 0:
        raise InvalidRequest("calls must be a positive integer, or -1 for every call until cleared.", field="calls")
    updates: dict = {"fault_error": error, "fault_error_remaining": calls}
    if moved_to is not None:
        if moved_to and not events.valid_handler_url(moved_to):
            raise InvalidRequest("moved_to must be an http(s) URL.", field="moved_to")
        updates["moved_to"] = moved_to
    if error == MOVED and not (moved_to if moved_to is not None else _fresh(portal).moved_to):
        raise InvalidRequest("The MOVED fault needs moved_to (the portal's new address).", field="moved_to")
    if require_https is not None:
        updates["require_https"] = bool(require_https)
    SandboxPortal.objects.filter(pk=portal.pk).update(**updates)
    return _fresh(portal)


def sandbox_clear_fault(*, portal: SandboxPortal) -> SandboxPortal:
    """Switch the fault off and allow plain HTTP again."""
    return sandbox_set_fault(portal=portal, error="", require_https=False)


# ---------------------------------------------------------------------------- events


def sandbox_outgoing_webhook_create(*, portal: SandboxPortal, event: str, handler: str) -> tuple[int, str]:
    """An outgoing webhook (set up in the portal's UI on a real portal): `event` is POSTed to
    `handler` with an `auth` block without tokens. Returns (handler id, application_token)."""
    name = event.strip().upper() if isinstance(event, str) else ""
    if not events.known_event(name):
        raise InvalidRequest(f"Unknown event {event!r}.", field="event")
    if not isinstance(handler, str) or not events.valid_handler_url(handler):
        raise InvalidRequest("handler must be an http(s) URL.", field="handler")
    row = SandboxEventHandler.objects.create(portal=portal, client_id="", event=name, handler=handler,
                                             created_at=clock.now())
    return row.pk, application_token(portal=portal, subject=f"hook:{row.pk}")


def sandbox_application_token(*, portal: SandboxPortal, client_id: str) -> str:
    """The `application_token` the portal sends with events for this app."""
    return application_token(portal=portal, subject=_client(client_id).client_id)


def sandbox_app_event(*, portal: SandboxPortal, client_id: str, url: str, event: str, data: dict | None = None,
                      user_id: int = 1) -> str:
    """Send an application lifecycle event to `url` after commit: ONAPPINSTALL (data VERSION,
    ACTIVE, INSTALLED, LANGUAGE_ID), ONAPPUPDATE (VERSION, PREVIOUS_VERSION, LANGUAGE_ID),
    ONAPPMETHODCONFIRM (TOKEN, METHOD, CONFIRMED, LANGUAGE_ID; no tokens in `auth`),
    ONAPPUNINSTALL (LANGUAGE_ID, CLEAN; no tokens). Returns the form body."""
    name = event.strip().upper() if isinstance(event, str) else ""
    defaults = {
        "ONAPPINSTALL": {"VERSION": "1", "ACTIVE": "Y", "INSTALLED": "Y", "LANGUAGE_ID": "en"},
        "ONAPPUPDATE": {"VERSION": "2", "PREVIOUS_VERSION": "1", "LANGUAGE_ID": "en"},
        "ONAPPMETHODCONFIRM": {"TOKEN": "", "METHOD": "", "CONFIRMED": "1", "LANGUAGE_ID": "en"},
        "ONAPPUNINSTALL": {"LANGUAGE_ID": "en", "CLEAN": "0"},
    }
    if name not in defaults:
        raise InvalidRequest("event must be ONAPPINSTALL, ONAPPUPDATE, ONAPPMETHODCONFIRM or ONAPPUNINSTALL.",
                             field="event")
    if not isinstance(url, str) or not events.valid_handler_url(url):
        raise InvalidRequest("url must be an http(s) URL.", field="url")
    payload = {**defaults[name], **(data or {})}
    return events.app_event(portal=_fresh(portal), client=_client(client_id), url=url, event=name, data=payload,
                            user_id=user_id, tokens=name in ("ONAPPINSTALL", "ONAPPUPDATE"))


def sandbox_clear_faults(*, portal: SandboxPortal) -> SandboxPortal:
    """Every fault off: latency, 5xx, timeouts, and the switched-on system error / https rule."""
    sandbox_set_faults(portal=portal)
    return sandbox_clear_fault(portal=portal)


__all__ = [
    "Answer",
    "sandbox_app_event",
    "sandbox_application_token",
    "sandbox_outgoing_webhook_create",
    "sandbox_base_url",
    "sandbox_clear_fault",
    "sandbox_clear_faults",
    "sandbox_expire_tokens",
    "sandbox_oauth_client_create",
    "sandbox_oauth_code_issue",
    "sandbox_oauth_issue",
    "sandbox_oauth_token",
    "sandbox_portal_ensure",
    "sandbox_reset_limits",
    "sandbox_rest_call",
    "sandbox_set_fault",
    "sandbox_set_faults",
    "sandbox_set_limits",
    "sandbox_webhook_create",
]
