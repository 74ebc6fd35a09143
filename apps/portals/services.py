"""Portal and credential services: create or update, with an audit entry and no secret in it."""

import ipaddress
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction

from apps.audit import registry as audit_events
from apps.audit.services import audit_record
from apps.core.exceptions import InvalidRequest

from .models import AuthMode, Credential, CredentialStatus, Portal

LOOPBACK_NAMES = {"localhost"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def validate_base_url(url: str) -> str:
    """A portal address: https, or http only to a loopback host when PORTAL_ALLOW_LOOPBACK_HTTP is on
    (the sandbox). No credentials, query or fragment; the trailing slash is dropped."""
    parts = urlsplit((url or "").strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidRequest("The portal URL must look like https://example.bitrix24.com", field="url")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise InvalidRequest("The portal URL carries no credentials, query or fragment.", field="url")
    if parts.scheme == "http" and not (settings.PORTAL_ALLOW_LOOPBACK_HTTP and is_loopback(parts.hostname)):
        raise InvalidRequest(
            "Bitrix24 requires HTTPS; http:// is allowed only for a loopback host with PORTAL_ALLOW_LOOPBACK_HTTP on.",
            field="url")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def portal_upsert(*, slug: str, base_url: str, auth_mode: str, name: str = "", rate_per_second: float | None = None,
                  burst: int | None = None, member_id: str | None = None, secrets: dict | None = None,
                  fields: dict | None = None, acting_user=None) -> tuple[Portal, bool]:
    """Create or update a portal and its credential. `secrets` are credential secret fields
    (webhook_code, access_token, ...); `fields` other credential columns."""
    if auth_mode not in AuthMode.values:
        raise InvalidRequest("auth mode is webhook or oauth", field="auth_mode")
    base_url = validate_base_url(base_url)
    if rate_per_second is not None and not 0 < rate_per_second <= 1000:
        raise InvalidRequest("rate is a positive number of requests per second", field="rps")
    if burst is not None and not 1 <= burst <= 100000:
        raise InvalidRequest("burst is a positive whole number", field="burst")
    with transaction.atomic():
        portal, created = Portal.objects.select_for_update().get_or_create(
            slug=slug, defaults={"base_url": base_url, "auth_mode": auth_mode})
        portal.base_url, portal.auth_mode = base_url, auth_mode
        if name:
            portal.name = name
        if rate_per_second is not None:
            portal.rate_per_second = rate_per_second
        if burst is not None:
            portal.burst = burst
        if member_id is not None:
            portal.member_id = member_id
        portal.full_clean()
        portal.save()
        credential, _ = Credential.objects.get_or_create(portal=portal)
        for key, value in (fields or {}).items():
            setattr(credential, key, value)
        for key, value in (secrets or {}).items():
            if key not in Credential.SECRET_FIELDS:
                raise InvalidRequest(f"{key} is not a credential secret", field=key)
            setattr(credential, key, value)
        credential.status, credential.status_detail = "ok", ""
        credential.save()
        audit_record(action=audit_events.PORTAL_CHANGED, actor=acting_user, portal=portal, data={
            "created": created, "base_url": base_url, "auth_mode": auth_mode,
            "secrets_set": sorted(k for k, v in (secrets or {}).items() if v),
        })
    return portal, created


def credential_set_status(*, portal, status: str, detail: str = "", code: str = "", acting_user=None) -> Credential:
    """Set a portal credential's status (ok, broken, revoked), audited in the same transaction."""
    if status not in CredentialStatus.values:
        raise InvalidRequest(f"status is one of {', '.join(CredentialStatus.values)}", field="status")
    with transaction.atomic():
        credential, _ = Credential.objects.select_for_update().get_or_create(portal=portal)
        credential.status, credential.status_detail = status, (detail or "")[:300]
        credential.save(update_fields=["status", "status_detail", "updated_at"])
        audit_record(action=audit_events.PORTAL_CHANGED, actor=acting_user, portal=portal, data={
            "credential_status": status, "status_code": code, "detail": (detail or "")[:300]})
    return credential
