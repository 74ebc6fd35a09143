"""OAuth install flow services (FACTS §7, §8, §10).

- `portal_install_from_callback`: the app install callback (and ONAPPINSTALL): Bitrix24 POSTs a
  form with `auth[access_token]`, `auth[refresh_token]`, `auth[member_id]`, `auth[domain]`,
  `auth[client_endpoint]`, `auth[application_token]`, `auth[expires_in]`, `auth[scope]` ...
- `portal_install_from_code`: the authorization-code redirect (`?code&state&domain&member_id
  &scope&server_domain`): the code is exchanged at the app's token endpoint (valid 30 s).
- `oauth_authorize_url`: where to send an admin's browser to start the code flow, with a signed
  `state` (10 minutes) that the callback checks.

Nothing is trusted before it is verified: the posted access token must work on the portal it
claims (`app.info`, FACTS §10) and the portal address must be the one the domain names. A
`member_id` already registered for another address is refused (a forged install must not
re-point a known portal's credential). Portals are keyed by `member_id`; the slug is derived
from the domain. Tokens are compared in constant time. What is stored, and how, is one service:
`apps.portals.services.portal_install_oauth`.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.core import signing
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from apps.bitrix.client import token_request, verify_access_token
from apps.bitrix.errors import BitrixError
from apps.core.exceptions import ApplicationError, InvalidRequest

from .models import Credential, OAuthApp, Portal
from .services import is_loopback, portal_install_oauth

STATE_SALT = "apps.portals.oauth.state"
STATE_MAX_AGE = 600
_MEMBER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
DOMAIN_RE = re.compile(r"[A-Za-z0-9.-]{1,253}(?::[0-9]{1,5})?")
_TOKEN = re.compile(r"[\x21-\x7e]{1,512}")


class InstallNotVerified(ApplicationError):
    """400: the install's token did not work on the portal it names."""

    code = "install_not_verified"
    status = 400
    default_message = "The install could not be verified with the portal."


# --- input checks -----------------------------------------------------------------------------


def _required(data: dict, key: str, pattern: re.Pattern, *, field: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{field} is missing.", field=field)
    value = value.strip()
    if not pattern.fullmatch(value):
        raise InvalidRequest(f"{field} is malformed.", field=field)
    return value


def _endpoint_for(domain: str, client_endpoint: str | None, *, field: str) -> str:
    """The portal's REST root (`.../rest/`), which must live on `domain`: https, or http to a
    loopback host when PORTAL_ALLOW_LOOPBACK_HTTP is on (the sandbox)."""
    if not client_endpoint:
        client_endpoint = f"https://{domain}/rest/"
    parts = urlsplit(client_endpoint.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("client_endpoint must be an http(s) URL.", field=field)
    if parts.username or parts.password or parts.query or parts.fragment:
        raise InvalidRequest("client_endpoint carries no credentials, query or fragment.", field=field)
    if parts.netloc.lower() != domain.lower():
        raise InvalidRequest("client_endpoint is not on the portal's domain.", field=field)
    if parts.scheme == "http" and not (settings.PORTAL_ALLOW_LOOPBACK_HTTP and is_loopback(parts.hostname)):
        raise InvalidRequest("Bitrix24 portals are reached over HTTPS.", field=field)
    if not parts.path.endswith("/rest/") and not parts.path.endswith("/rest"):
        raise InvalidRequest("client_endpoint must end with /rest/.", field=field)
    path = parts.path.rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{path}/"


def _expires_at(value) -> dt.datetime | None:
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        return None
    if not 0 < seconds <= 30 * 86400:
        return None
    return timezone.now() + dt.timedelta(seconds=seconds)


def pick_app(client_id: str | None) -> OAuthApp:
    if client_id:
        app = OAuthApp.objects.filter(client_id=client_id).first()
        if app is None:
            raise InvalidRequest("Unknown OAuth application.", field="app")
        return app
    apps = list(OAuthApp.objects.all()[:2])
    if len(apps) != 1:
        raise InvalidRequest(
            "Name the OAuth application with ?app=<client_id> (there is not exactly one).", field="app"
        )
    return apps[0]


def _auth_fields(form) -> dict:
    """`auth[...]` fields of a form-encoded install (QueryDict or dict)."""
    out = {}
    for key in form.keys():
        match = re.fullmatch(r"auth\[([A-Za-z_]+)\]", key)
        if match:
            value = form.get(key)
            out[match.group(1)] = value if isinstance(value, str) else ""
    return out


def _verify(*, endpoint: str, access_token: str, label: str) -> dict:
    try:
        return verify_access_token(client_endpoint=endpoint, access_token=access_token, label=label)
    except BitrixError as exc:
        raise InstallNotVerified(
            "The access token was not accepted by the portal (app.info); nothing was stored.",
            cause=exc.code,
        ) from None


# --- services -------------------------------------------------------------------------------


def portal_install_from_callback(*, form, app_client_id: str | None = None) -> Portal:
    """Install callback / ONAPPINSTALL: verify the posted tokens, then store them by member_id."""
    auth = _auth_fields(form)
    if not auth:
        raise InvalidRequest("The install form carries no auth[...] fields.", field="auth")
    access_token = _required(auth, "access_token", _TOKEN, field="auth[access_token]")
    refresh_token = _required(auth, "refresh_token", _TOKEN, field="auth[refresh_token]")
    member_id = _required(auth, "member_id", _MEMBER_ID, field="auth[member_id]")
    domain = _required(auth, "domain", DOMAIN_RE, field="auth[domain]")
    application_token = _required(auth, "application_token", _TOKEN, field="auth[application_token]")
    endpoint = _endpoint_for(domain, auth.get("client_endpoint") or None, field="auth[client_endpoint]")
    app = pick_app(app_client_id)

    # A re-delivered install for a known portal must carry the application_token we hold, or
    # pass the app.info check with its own token (a reinstall issues a new one).
    existing = Credential.objects.filter(portal__member_id=member_id).first()
    if existing and existing.application_token and constant_time_compare(
        existing.application_token, application_token
    ) and constant_time_compare(existing.access_token or "", access_token):
        return existing.portal  # the same install delivered twice: nothing new
    _verify(endpoint=endpoint, access_token=access_token, label=domain)
    return portal_install_oauth(
        app=app,
        member_id=member_id,
        domain=domain,
        endpoint=endpoint,
        access_token=access_token,
        refresh_token=refresh_token,
        expires_at=_expires_at(auth.get("expires_in")),
        scope=str(auth.get("scope") or ""),
        application_token=application_token,
        via="install",
    )


def oauth_authorize_url(*, portal_base_url: str, app: OAuthApp) -> str:
    """The portal's authorize page with a signed, expiring state naming the app."""
    state = signing.dumps({"app": app.client_id, "n": secrets.token_urlsafe(12)}, salt=STATE_SALT)
    return f"{portal_base_url.rstrip('/')}/oauth/authorize/?" + urlencode({"client_id": app.client_id, "state": state})


def portal_install_from_code(*, params, acting_user=None) -> Portal:
    """Authorization-code redirect: check state, exchange the code, verify, store."""
    state = params.get("state")
    if not isinstance(state, str) or not state:
        raise InvalidRequest("state is missing.", field="state")
    try:
        payload = signing.loads(state, salt=STATE_SALT, max_age=STATE_MAX_AGE)
    except signing.BadSignature:
        raise InvalidRequest("state is invalid or expired; start the authorisation again.", field="state") from None
    code = _required(params, "code", _TOKEN, field="code")
    domain = _required(params, "domain", DOMAIN_RE, field="domain")
    member_id = _required(params, "member_id", _MEMBER_ID, field="member_id")
    app = pick_app(payload.get("app") if isinstance(payload, dict) else None)
    try:
        answer = token_request(
            token_url=app.token_url,
            params={
                "grant_type": "authorization_code",
                "client_id": app.client_id,
                "client_secret": app.client_secret,
                "code": code,
            },
            label=domain,
        )
    except BitrixError as exc:
        raise InstallNotVerified(
            "The authorization code was not accepted by the token endpoint.", cause=exc.code
        ) from None
    answered_member = str(answer.get("member_id") or "")
    if not constant_time_compare(answered_member, member_id):
        raise InstallNotVerified("The token endpoint answered for another portal (member_id).", field="member_id")
    access_token = str(answer.get("access_token") or "")
    refresh_token = str(answer.get("refresh_token") or "")
    if not (_TOKEN.fullmatch(access_token) and _TOKEN.fullmatch(refresh_token)):
        raise InstallNotVerified("The token endpoint answered without a token pair.")
    endpoint = _endpoint_for(domain, answer.get("client_endpoint") or None, field="domain")
    _verify(endpoint=endpoint, access_token=access_token, label=domain)
    expires_at = None
    if answer.get("expires"):
        try:
            expires_at = dt.datetime.fromtimestamp(int(answer["expires"]), tz=dt.UTC)
        except (TypeError, ValueError, OverflowError):
            expires_at = None
    return portal_install_oauth(
        app=app,
        member_id=member_id,
        domain=domain,
        endpoint=endpoint,
        access_token=access_token,
        refresh_token=refresh_token,
        expires_at=expires_at or _expires_at(answer.get("expires_in")),
        scope=str(answer.get("scope") or params.get("scope") or ""),
        application_token=None,
        via="authorization_code",
        acting_user=acting_user,
    )
