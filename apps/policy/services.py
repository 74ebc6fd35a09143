"""Pack grants: `grant_upsert` and `grants_remove` are the only writers of PackGrant."""

from collections.abc import Iterable

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
    """Create or update the grant of `pack` to `agent` on `portal` (the only writer of PackGrant,
    with `grant_remove`): one audit entry in the same transaction."""
    if pack not in known_pack_names():
        raise InvalidRequest(f"Unknown pack {pack!r}; built-in packs or a custom pack's name.", field="pack")
    values = {
        "read_policy": validate_policy(read, field="read"),
        "write_policy": validate_policy(write, field="write"),
        "destructive_policy": validate_policy(destructive, field="destructive"),
        "expires_at": expires_at,
    }
    with transaction.atomic():
        grant, created = PackGrant.objects.update_or_create(  # locks the row it updates
            agent=agent, portal=portal, pack=pack, defaults=values,
            create_defaults={**values, "created_by": acting_user})
        audit_record(action=audit_events.GRANT_CHANGED, actor=acting_user, portal=portal, data={
            "agent": agent.slug, "pack": pack, "created": created, "read": read, "write": write,
            "destructive": destructive, "expires_at": expires_at.isoformat() if expires_at else None,
        })
    return grant


def grant_remove(*, grant: PackGrant, acting_user=None) -> None:
    grants_remove(grants=[grant], acting_user=acting_user)


def grants_remove(*, grants: Iterable[PackGrant], acting_user=None) -> int:
    """Remove grants: every row and its audit entry in one transaction (a bulk delete in the
    admin commits all or nothing). Returns how many were removed."""
    removed = 0
    with transaction.atomic():
        for grant in grants:
            audit_record(action=audit_events.GRANT_REMOVED, actor=acting_user, portal=grant.portal,
                         data={"agent": grant.agent.slug, "pack": grant.pack})
            removed += PackGrant.objects.filter(pk=grant.pk).delete()[0]
    return removed
