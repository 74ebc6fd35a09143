"""Audit event types, registered once (Sentry's audit registry): a duplicate code fails at import."""

from dataclasses import dataclass


@dataclass(frozen=True)
class AuditEvent:
    code: str
    description: str


_EVENTS: dict[str, AuditEvent] = {}


def register(code: str, description: str) -> str:
    if code in _EVENTS:
        raise ValueError(f"Audit event {code!r} is registered twice.")
    _EVENTS[code] = AuditEvent(code, description)
    return code


def get(code: str) -> AuditEvent:
    try:
        return _EVENTS[code]
    except KeyError:
        raise ValueError(f"Audit event {code!r} is not registered.") from None


def all_events() -> list[AuditEvent]:
    return sorted(_EVENTS.values(), key=lambda e: e.code)


PLAN_SUBMITTED = register("plan.submitted", "An agent submitted a plan")
PLAN_TRANSITION = register("plan.transition", "A plan changed state")
PLAN_APPROVAL = register("plan.approval", "An approver approved or rejected a plan")
PLAN_ATTEMPT = register("plan.attempt", "The executor sent a plan to the portal")
PLAN_RECONCILED = register("plan.reconciled", "An approver settled a plan whose outcome was unknown")
AGENT_CREATED = register("agent.created", "An agent was created")
AGENT_REVOKED = register("agent.revoked", "An agent's token was revoked")
AGENT_CALLBACK_SECRET_ROTATED = register("agent.callback_secret_rotated", "An agent got a new callback secret")
AGENT_TOKEN_ROTATED = register("agent.token_rotated", "An agent got a new token")
AGENT_CHANGED = register("agent.changed", "An agent's name or owner was changed")
GRANT_CHANGED = register("grant.changed", "A pack grant was created or changed")
GRANT_REMOVED = register("grant.removed", "A pack grant was removed")
PORTAL_CHANGED = register("portal.changed", "A portal or its credential was created or changed")
PORTAL_DELETED = register("portal.deleted", "A portal and its credential were deleted")
OAUTH_APP_CHANGED = register("oauth_app.changed", "An OAuth application's keys were created or changed")
OAUTH_APP_DELETED = register("oauth_app.deleted", "An OAuth application was deleted")
PORTAL_APPROVERS_CHANGED = register("portal.approvers_changed", "Approvers were added to or removed from a portal")
CREDENTIAL_BROKEN = register("credential.broken", "A portal credential stopped working")
CREDENTIAL_REVOKED = register("credential.revoked", "A portal credential was revoked (the app was uninstalled)")
CREDENTIAL_RESTORED = register("credential.restored", "A portal credential was replaced and works again")
CREDENTIAL_REFRESHED = register("credential.refreshed", "OAuth tokens were refreshed")
SECRETS_ROTATED = register("secrets.rotated", "Stored secrets were re-encrypted under the first key")
AUDIT_MIGRATED = register("audit.migrated", "Entries of the old unkeyed chain were re-chained under the audit key")
AUDIT_EXPORTED = register("audit.exported", "A range of an audit chain was exported")
# apps/events
EVENTS_SETTINGS_CHANGED = register("events.settings_changed", "A portal's event settings changed")
EVENTS_OFFLINE_BATCH = register("events.offline_batch", "An offline event batch was fetched, stored and settled")
EVENTS_DEAD_LETTERED = register("events.dead_lettered", "An inbound event failed too often and became a dead letter")
EVENTS_REPLAYED = register("events.replayed", "An admin replayed a dead letter")
EVENTS_BINDING_CHANGED = register("events.binding_changed", "An event handler was bound or unbound on a portal")
EVENTS_APP_UNINSTALLED = register("events.app_uninstalled", "The app was uninstalled from a portal (ONAPPUNINSTALL)")
EVENTS_SUBSCRIPTION_CHANGED = register("events.subscription_changed", "An agent subscribed to events or unsubscribed")
EVENTS_PURGED = register("events.purged", "Processed inbound events past their retention were deleted")
