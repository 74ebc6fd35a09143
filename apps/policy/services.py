from django.db import transaction

from apps.audit import registry as audit_events
from apps.audit.services import audit_record
from apps.core.exceptions import InvalidRequest

from .models import PackGrant, PolicyChoice
from .selectors import known_pack_names


def validate_policy(value: str, *, field: str) -> str:
    if value not in PolicyChoice.values:
        raise InvalidRequest(f"{field} is one of {', '.join(PolicyChoice.values)}", field=field)
    return value


def grant_upsert(*, agent, portal, pack: str, read: str = "auto", write: str = "approve",
                 destructive: str = "approve2", expires_at=None, acting_user=None) -> PackGrant:
    if pack not in known_pack_names():
        raise InvalidRequest(f"Unknown pack {pack!r}; built-in packs or a custom pack's name.", field="pack")
    values = {
        "read_policy": validate_policy(read, field="read"),
        "write_policy": validate_policy(write, field="write"),
        "destructive_policy": validate_policy(destructive, field="destructive"),
        "expires_at": expires_at,
    }
    with transaction.atomic():
        grant, created = PackGrant.objects.update_or_create(
            agent=agent, portal=portal, pack=pack, defaults={**values, "created_by": acting_user})
        audit_record(action=audit_events.GRANT_CHANGED, actor=acting_user, portal=portal, data={
            "agent": agent.slug, "pack": pack, "created": created, "read": read, "write": write,
            "destructive": destructive, "expires_at": expires_at.isoformat() if expires_at else None,
        })
    return grant


def grant_remove(*, grant: PackGrant, acting_user=None) -> None:
    with transaction.atomic():
        audit_record(action=audit_events.GRANT_REMOVED, actor=acting_user, portal=grant.portal,
                     data={"agent": grant.agent.slug, "pack": grant.pack})
        grant.delete()
