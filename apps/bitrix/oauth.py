"""OAuth token refresh, single-flight across processes (FACTS §7).

After an answer with one of `errors.REFRESH_CODES` (`expired_token`, `invalid_token`,
`NO_AUTH_FOUND`), every BitrixClient runs `credential_refresh` with the token that failed. It
locks the Credential row (`select_for_update`), re-reads it and refreshes only if the stored
token is still the one that failed: the first caller refreshes while the others wait on the
lock, then find a new token and use it. The rotated pair is committed before
anyone uses it (Bitrix24 invalidates the old refresh token). On SQLite (the embedded default)
a per-portal file lock replaces the row lock, because a write transaction there locks the whole
database while the sandbox's token endpoint, in the same database, needs to write.

An error answer of the token endpoint (`invalid_grant`, `invalid_client`, `PAYMENT_REQUIRED`,
`invalid_scope` ...) marks the credential broken, alerts the admins (logger.error + mail_admins)
and raises AuthFailed. A refresh that fails for a passing
reason (token endpoint unreachable, 5xx, unreadable answer) raises NotSent: the call itself was
refused with 401 and never ran, so it may be retried.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
from pathlib import Path

from django.conf import settings
from django.core.mail import mail_admins
from django.db import connection, transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from apps.audit import registry as audit_events
from apps.audit.services import audit_record
from apps.portals.models import Credential, CredentialStatus, Portal

from .errors import AuthFailed, BitrixError, NotSent, PortalError
from .http import token_request

logger = logging.getLogger(__name__)


def token_url_for(credential: Credential) -> str:
    """The token endpoint: the OAuth app's, else the credential's, else the setting."""
    if credential.oauth_app_id and credential.oauth_app.token_url:
        return credential.oauth_app.token_url
    if credential.oauth_server_url:
        url = credential.oauth_server_url
        # A stored server_endpoint (https://oauth.bitrix.info/rest/) names the same server.
        if url.rstrip("/").endswith("/rest"):
            url = url.rstrip("/")[: -len("/rest")] + "/oauth/token/"
        return url
    return settings.BITRIX_OAUTH_TOKEN_URL


def client_keys_for(credential: Credential) -> tuple[str, str]:
    client_id = credential.client_id or (credential.oauth_app.client_id if credential.oauth_app_id else "")
    client_secret = credential.client_secret or (credential.oauth_app.client_secret if credential.oauth_app_id else "")
    return client_id, client_secret


def apply_token_answer(credential: Credential, answer: dict) -> list[str]:
    """Copy a token answer into the credential (not saved). Returns the changed field names."""
    credential.access_token = str(answer["access_token"])
    fields = ["access_token"]
    if answer.get("refresh_token"):
        credential.refresh_token = str(answer["refresh_token"])
        fields.append("refresh_token")
    expires_at = None
    try:
        if answer.get("expires"):
            expires_at = dt.datetime.fromtimestamp(int(answer["expires"]), tz=dt.UTC)
        elif answer.get("expires_in"):
            expires_at = timezone.now() + dt.timedelta(seconds=int(answer["expires_in"]))
    except (TypeError, ValueError, OverflowError):
        expires_at = None
    credential.access_expires_at = expires_at
    fields.append("access_expires_at")
    if answer.get("scope"):
        credential.scope = str(answer["scope"])[:1000]
        fields.append("scope")
    if answer.get("client_endpoint"):
        credential.client_endpoint = str(answer["client_endpoint"])[:300]
        fields.append("client_endpoint")
    return fields


def credential_mark_broken(*, portal_id: int, code: str, detail: str = "") -> None:
    """Mark the portal's credential broken (the one credential status service audits it) and
    alert the admins, once per breakage."""
    from apps.portals.services import credential_set_status

    if credential_set_status(portal=portal_id, status=CredentialStatus.BROKEN, code=code, detail=detail):
        _alert(portal_id=portal_id, text=f"{code}: {detail}".strip().rstrip(":")[:300])


def _portal(portal_id: int) -> Portal | None:
    return Portal.objects.filter(pk=portal_id).first()


def _alert(*, portal_id: int, text: str) -> None:
    portal = _portal(portal_id)
    slug = portal.slug if portal else str(portal_id)
    logger.error("bitrix credential of portal %s is broken: %s", slug, text)
    try:
        mail_admins(
            f"Bitrix24 credential broken: {slug}",
            f"The credential of portal {slug} was marked broken ({text}).\n"
            "Calls to this portal fail until it is re-authorised (reinstall the app or update the webhook).",
            fail_silently=True,
        )
    except Exception:  # noqa: BLE001 - an alert must never break the caller
        logger.exception("mail_admins failed")


def _row_locks() -> bool:
    """PostgreSQL (and other servers with row locks): hold the Credential row lock across the
    token request. SQLite locks the whole database for a write transaction, and the sandbox's
    token endpoint (same database) must write while we wait: there a per-portal file lock gives
    the same single flight across the processes of one host, without a long transaction."""
    return connection.vendor != "sqlite" and connection.features.has_select_for_update


@contextlib.contextmanager
def _file_lock(portal_id: int):
    directory = Path(settings.DATA_DIR) / "locks"
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f"bitrix-credential-{portal_id}.lock", "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _credential_query():
    return Credential.objects.select_related("oauth_app", "portal")


def credential_refresh(*, portal_id: int, failed_access_token: str) -> str:
    """Single-flight refresh. Returns the access token to use now (new, or refreshed by
    another process while we waited for the lock). Raises AuthFailed or NotSent."""
    if _row_locks():
        with transaction.atomic():
            credential = _credential_query().select_for_update(of=("self",)).get(portal_id=portal_id)
            token, broken = _refresh_locked(credential, failed_access_token)
    else:
        with _file_lock(portal_id):
            credential = _credential_query().get(portal_id=portal_id)
            token, broken = _refresh_locked(credential, failed_access_token)
    if broken is not None:
        # The broken mark is committed: now alert and fail.
        _alert(portal_id=portal_id, text=f"{broken.code}: {broken.description}".strip().rstrip(":"))
        raise broken
    return token


def _mark(credential: Credential, code: str, detail: str) -> None:
    from apps.portals.services import credential_set_status

    credential_set_status(portal=credential.portal_id, status=CredentialStatus.BROKEN, code=code, detail=detail)
    credential.refresh_from_db(fields=["status", "status_detail"])


def _refresh_locked(credential: Credential, failed_access_token: str) -> tuple[str, AuthFailed | None]:
    """Under the lock: (token to use, None) or ("", the AuthFailed to raise after commit)."""
    if credential.status != CredentialStatus.OK:
        raise AuthFailed(f"CREDENTIAL_{credential.status.upper()}",
                         f"The credential is {credential.status} ({credential.status_detail}).")
    current = credential.access_token or ""
    if current and not constant_time_compare(current, failed_access_token or ""):
        return current, None  # someone refreshed while we waited for the lock
    client_id, client_secret = client_keys_for(credential)
    if not (client_id and client_secret and credential.refresh_token):
        broken = AuthFailed("NO_REFRESH_TOKEN", "No client keys or refresh token to refresh with.")
        _mark(credential, broken.code, broken.description)
        return "", broken
    try:
        answer = token_request(
            token_url=token_url_for(credential),
            params={
                "grant_type": "refresh_token",
                "client_id": client_id,
                "client_secret": client_secret,
                "refresh_token": credential.refresh_token,
            },
            label=credential.portal.slug,
        )
    except (AuthFailed, PortalError) as exc:
        # invalid_grant, invalid_client, PAYMENT_REQUIRED, invalid_scope ...: permanent.
        broken = exc if isinstance(exc, AuthFailed) else AuthFailed(
            exc.code, exc.description, http_status=exc.http_status
        )
        _mark(credential, exc.code, exc.description)
        return "", broken
    except NotSent:
        raise
    except BitrixError as exc:
        # The REST call was refused with 401 and never ran: retrying it is safe.
        raise NotSent(
            "TOKEN_REFRESH_FAILED",
            f"The token refresh failed ({exc.code}); the call was not run.",
            http_status=exc.http_status,
            retry_after=10.0,
        ) from None
    with transaction.atomic():
        fields = apply_token_answer(credential, answer)
        credential.save(update_fields=[*fields, "updated_at"])
        expires = credential.access_expires_at
        audit_record(
            action=audit_events.CREDENTIAL_REFRESHED,
            portal=credential.portal,
            data={"expires_at": expires.isoformat() if expires else None},
        )
    logger.info("bitrix %s: OAuth token refreshed", credential.portal.slug)
    return credential.access_token, None
