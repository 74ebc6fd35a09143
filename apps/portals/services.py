"""Portal, credential, approver-list and OAuth-install services: the one home of every write to
`Portal`, `Credential` and `Portal.approvers`. The admin, the commands, the demo and the OAuth
views call these; each writes its audit entry in its own transaction, and no secret value ever
reaches the audit log (only the names of the secrets that were set)."""

import datetime as dt
import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.text import slugify

from apps.audit import registry as audit_events
from apps.audit.services import audit_record
from apps.core.exceptions import Conflict, InvalidRequest

from .models import AuthMode, Credential, CredentialStatus, OAuthApp, Portal

LOOPBACK_NAMES = {"localhost"}
SLUG_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
# Credential columns a caller may set besides the secrets; `status` has its own service.
CREDENTIAL_FIELDS = ("webhook_user_id", "oauth_app", "client_id", "oauth_server_url", "access_expires_at",
                     "client_endpoint", "scope")
_STATUS_EVENTS = {
    CredentialStatus.OK: audit_events.CREDENTIAL_RESTORED,
    CredentialStatus.BROKEN: audit_events.CREDENTIAL_BROKEN,
    CredentialStatus.REVOKED: audit_events.CREDENTIAL_REVOKED,
}


# --- checks shared by the services and the admin forms ------------------------------------------


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def validate_slug(slug) -> str:
    if not isinstance(slug, str) or not SLUG_RE.fullmatch(slug):
        raise InvalidRequest(
            f"{slug!r} is not a portal slug: 1 to 64 letters, digits, '-' or '_' (e.g. acme).", field="slug")
    return slug


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
    if "/rest/" in f"{parts.path}/":
        raise InvalidRequest(
            "That is a webhook or REST URL, not the portal address: give https://example.bitrix24.com and "
            "the webhook's user id and code separately.", field="url")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def validate_limits(*, rate_per_second: float | None, burst: int | None) -> None:
    if rate_per_second is not None and not 0 < rate_per_second <= 1000:
        raise InvalidRequest("rate is a positive number of requests per second (at most 1000)", field="rps")
    if burst is not None and not 1 <= burst <= 100000:
        raise InvalidRequest("burst is a positive whole number (at most 100000)", field="burst")


def _full_clean(obj, *, exclude=()) -> None:
    try:
        # Uniqueness is checked by the services themselves, with a message that says what clashed.
        obj.full_clean(exclude=list(exclude), validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        raise InvalidRequest(f"{field}: {' '.join(messages)}", field=field) from None


# --- portals and their credential --------------------------------------------------------------


def portal_upsert(*, slug: str, base_url: str, auth_mode: str, name: str | None = None,
                  rate_per_second: float | None = None, burst: int | None = None, member_id: str | None = None,
                  is_active: bool | None = None,
                  secrets: dict | None = None, fields: dict | None = None, approvers: Iterable | None = None,
                  acting_user=None) -> tuple[Portal, bool]:
    """Create or update a portal (by slug) and its credential.

    `name`, `rate_per_second`, `burst`, `member_id` and `is_active` left None keep the stored
    value. `secrets` are credential secret fields (webhook_code, access_token, ...): an empty value
    keeps the stored one. `fields` are other credential columns (CREDENTIAL_FIELDS). `approvers`, when
    given, replaces the approver list (through `portal_set_approvers`). Replacing any part of the
    credential makes a broken or revoked credential OK again (through `credential_set_status`):
    the admin who pastes a new webhook code gets a working portal."""
    validate_slug(slug)
    if auth_mode not in AuthMode.values:
        raise InvalidRequest("auth mode is webhook or oauth", field="auth_mode")
    base_url = validate_base_url(base_url)
    validate_limits(rate_per_second=rate_per_second, burst=burst)
    secrets = {k: v for k, v in (secrets or {}).items() if v not in (None, "")}
    for key in secrets:
        if key not in Credential.SECRET_FIELDS:
            raise InvalidRequest(f"{key} is not a credential secret", field=key)
    for key in fields or {}:
        if key not in CREDENTIAL_FIELDS:
            raise InvalidRequest(f"{key} is not a credential field", field=key)
    with transaction.atomic():
        portal = Portal.objects.select_for_update().filter(slug=slug).first()
        created = portal is None
        if created:
            portal = Portal(slug=slug)
        values = {"base_url": base_url, "auth_mode": auth_mode, "name": name,
                  "rate_per_second": rate_per_second, "burst": burst, "member_id": member_id, "is_active": is_active}
        changed = []
        for key, value in values.items():
            if value is not None and getattr(portal, key) != value:
                setattr(portal, key, value)
                changed.append(key)
        _full_clean(portal)
        if Portal.objects.filter(member_id=portal.member_id).exclude(pk=portal.pk).exclude(member_id="").exists():
            raise InvalidRequest("Another portal has this member_id.", field="member_id")
        portal.save()
        credential = Credential.objects.select_for_update().filter(portal=portal).first() or Credential(portal=portal)
        for key, value in (fields or {}).items():
            if getattr(credential, key) != value:
                setattr(credential, key, value)
                changed.append(f"credential.{key}")
        for key, value in secrets.items():
            setattr(credential, key, value)
            changed.append(f"credential.{key}")
        _full_clean(credential, exclude=("portal",))
        credential.save()
        audit_record(action=audit_events.PORTAL_CHANGED, actor=acting_user, portal=portal, data={
            "created": created, "base_url": base_url, "auth_mode": auth_mode, "changed": sorted(changed),
            "secrets_set": sorted(secrets),
        })
        if any(key.startswith("credential.") for key in changed) and credential.status != CredentialStatus.OK:
            credential_set_status(portal=portal, status=CredentialStatus.OK, detail="credential replaced",
                                  acting_user=acting_user)
        if approvers is not None:
            portal_set_approvers(portal=portal, users=approvers, acting_user=acting_user)
    return portal, created


def portals_delete(*, portals: Iterable[Portal], acting_user=None) -> int:
    """Delete portals that never had a plan (plans keep their portal), all or none: each one's
    grants go through `grants_remove` (audited each), then the portal and its credential with one
    entry. Returns how many were deleted."""
    from apps.policy.services import grants_remove

    deleted = 0
    with transaction.atomic():
        for portal in portals:
            portal = Portal.objects.select_for_update().get(pk=portal.pk)
            if portal.plans.exists():
                raise Conflict(f"Portal {portal.slug} has plans; deactivate it (is_active off) instead.")
            grants_remove(grants=portal.grants.select_related("agent", "portal"), acting_user=acting_user)
            audit_record(action=audit_events.PORTAL_DELETED, actor=acting_user, portal=portal, data={
                "base_url": portal.base_url, "auth_mode": portal.auth_mode, "member_id": portal.member_id,
            })
            portal.delete()
            deleted += 1
    return deleted


def credential_set_status(*, portal, status: str, detail: str = "", code: str = "", acting_user=None) -> bool:
    """Set a portal credential's status (ok, broken, revoked) with one audit entry.

    `portal` is a Portal or its primary key. Returns True when the status changed, False when it
    already was `status` (so a breakage is recorded, and alerted by the caller, once) or the
    portal has no credential. `code` is the error code that caused it (e.g. expired_token),
    `detail` a human-readable reason; both are kept in `status_detail` and the audit entry."""
    if status not in CredentialStatus.values:
        raise InvalidRequest(f"status is one of {', '.join(CredentialStatus.values)}", field="status")
    code, detail = str(code or "")[:100], str(detail or "")[:300]
    text = (f"{code}: {detail}" if code and detail else code or detail)[:300]
    portal_id = getattr(portal, "pk", portal)
    with transaction.atomic():
        credential = Credential.objects.select_for_update(of=("self",)).select_related("portal").filter(
            portal_id=portal_id).first()
        if credential is None or credential.status == status:
            return False
        previous = credential.status
        credential.status, credential.status_detail = status, "" if status == CredentialStatus.OK else text
        credential.save(update_fields=["status", "status_detail", "updated_at"])
        audit_record(action=_STATUS_EVENTS[status], actor=acting_user, portal=credential.portal, data={
            "from": previous, "to": status, "code": code, "detail": detail,
        })
    return True


# --- approvers ----------------------------------------------------------------------------------


def _usernames(users) -> list[str]:
    return sorted(u.get_username() for u in users)


def _change_approvers(*, portal: Portal, replace=None, add=(), remove=(), acting_user=None) -> tuple[list, list]:
    with transaction.atomic():
        portal = Portal.objects.select_for_update().get(pk=portal.pk)
        current = {u.pk: u for u in portal.approvers.all()}
        wanted = dict(current) if replace is None else {u.pk: u for u in replace}
        wanted.update({u.pk: u for u in add})
        for user in remove:
            wanted.pop(user.pk, None)
        added = [u for pk, u in wanted.items() if pk not in current]
        removed = [u for pk, u in current.items() if pk not in wanted]
        if not added and not removed:
            return [], []
        portal.approvers.add(*added)
        portal.approvers.remove(*removed)
        audit_record(action=audit_events.PORTAL_APPROVERS_CHANGED, actor=acting_user, portal=portal, data={
            "added": _usernames(added), "removed": _usernames(removed), "approvers": _usernames(wanted.values()),
        })
    return added, removed


def portal_set_approvers(*, portal: Portal, users: Iterable, acting_user=None) -> tuple[list, list]:
    """Make `users` the portal's approver list. Returns (added, removed); one audit entry if
    anything changed, none otherwise."""
    return _change_approvers(portal=portal, replace=list(users), acting_user=acting_user)


def portal_approvers_add(*, portal: Portal, users: Iterable, acting_user=None) -> list:
    return _change_approvers(portal=portal, add=list(users), acting_user=acting_user)[0]


def portal_approvers_remove(*, portal: Portal, users: Iterable, acting_user=None) -> list:
    return _change_approvers(portal=portal, remove=list(users), acting_user=acting_user)[1]


# --- OAuth applications and installs ----------------------------------------------------------


def oauth_app_upsert(*, client_id: str, name: str, client_secret: str | None = None, scopes: str = "",
                     token_url: str | None = None, acting_user=None) -> tuple[OAuthApp, bool]:
    """Create or update an OAuth application (by client_id). A blank `client_secret` keeps the
    stored one; the audit entry names what changed, never the secret."""
    with transaction.atomic():
        app = OAuthApp.objects.select_for_update().filter(client_id=client_id).first()
        created = app is None
        if created:
            app = OAuthApp(client_id=client_id)
        changed = []
        for key, value in (("name", name), ("scopes", scopes), ("token_url", token_url),
                           ("client_secret", client_secret or None)):
            if value is not None and getattr(app, key) != value:
                setattr(app, key, value)
                changed.append(key)
        _full_clean(app)
        app.save()
        audit_record(action=audit_events.OAUTH_APP_CHANGED, actor=acting_user, data={
            "created": created, "client_id": client_id, "changed": sorted(changed),
        })
    return app, created


def oauth_apps_delete(*, apps: Iterable[OAuthApp], acting_user=None) -> int:
    """Delete OAuth applications no credential uses, all or none, with one entry each."""
    deleted = 0
    with transaction.atomic():
        for app in apps:
            app = OAuthApp.objects.select_for_update().get(pk=app.pk)
            if Credential.objects.filter(oauth_app=app).exists():
                raise Conflict(f"OAuth application {app.client_id} is used by installed portals.")
            audit_record(action=audit_events.OAUTH_APP_DELETED, actor=acting_user,
                         data={"client_id": app.client_id, "name": app.name})
            app.delete()
            deleted += 1
    return deleted


# --- OAuth installs -----------------------------------------------------------------------------


def slug_for_domain(domain: str, *, exclude_pk: int | None = None) -> str:
    """`some-domain.bitrix24.com` -> `some-domain-bitrix24-com` (unique, at most 64 chars)."""
    base = slugify(re.sub(r"[.:]", "-", domain.lower()))[:56].strip("-") or "portal"
    slug, n = base, 1
    while Portal.objects.filter(slug=slug).exclude(pk=exclude_pk).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


def portal_install_oauth(*, app: OAuthApp, member_id: str, domain: str, endpoint: str, access_token: str,
                         refresh_token: str, expires_at: dt.datetime | None, scope: str,
                         application_token: str | None, via: str, acting_user=None) -> Portal:
    """Store a verified OAuth install (apps.portals.oauth checks it first): the portal is found
    by member_id (or, once, by the address an admin registered), its credential gets the token
    pair, and a broken or revoked credential becomes OK again. A member_id registered for another
    address is refused: a forged install must not re-point a known portal."""
    base_url = endpoint.rstrip("/")[: -len("/rest")]
    with transaction.atomic():
        portal = Portal.objects.select_for_update().filter(member_id=member_id).first()
        if portal is None:
            # An admin may have registered the portal by address before installing the app.
            portal = Portal.objects.select_for_update().filter(base_url=base_url, member_id="").first()
        elif portal.base_url.rstrip("/") != base_url:
            raise InvalidRequest(
                "This member_id is registered for another portal address; an admin must update the portal first.",
                field="member_id",
            )
        created = portal is None
        if created:
            portal = Portal(slug=slug_for_domain(domain), base_url=base_url, name=domain[:200])
        previous = None if created else Credential.objects.filter(portal=portal).values_list(
            "status", flat=True).first()
        # Uninstalling the app deactivated the portal (apps.events); installing it again undoes that.
        reactivated = previous == CredentialStatus.REVOKED and not portal.is_active
        if reactivated:
            portal.is_active = True
        portal.member_id = member_id
        portal.auth_mode = AuthMode.OAUTH
        portal.save()
        credential = Credential.objects.select_for_update().filter(portal=portal).first() or Credential(portal=portal)
        credential.oauth_app = app
        credential.access_token = access_token
        credential.refresh_token = refresh_token
        credential.access_expires_at = expires_at
        credential.client_endpoint = endpoint[:300]
        credential.scope = scope[:1000]
        if application_token:
            credential.application_token = application_token
        credential.save()
        audit_record(action=audit_events.PORTAL_CHANGED, actor=acting_user, portal=portal, data={
            "created": created, "via": via, "member_id": member_id, "base_url": base_url,
            "auth_mode": AuthMode.OAUTH, "reactivated": reactivated,
            "secrets_set": sorted(k for k, v in (("access_token", access_token), ("refresh_token", refresh_token),
                                                 ("application_token", application_token)) if v),
        })
        if credential.status != CredentialStatus.OK:
            credential_set_status(portal=portal, status=CredentialStatus.OK, detail=f"app installed ({via})",
                                  acting_user=acting_user)
    return portal
