"""Database reads for the policy engine: grants become the plain `GrantView`s `decide()` takes."""

from django.db.models import Q
from django.utils import timezone

from .decide import GrantView
from .models import CustomPack, PackGrant
from .packs import BUILTIN_PACKS


def active_grants(*, agent, portal, now=None):
    now = now or timezone.now()
    return (
        PackGrant.objects.filter(agent=agent, portal=portal)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .order_by("pack")
    )


def custom_pack_patterns() -> dict[str, tuple[str, ...]]:
    return {pack.name: tuple(p.lower() for p in pack.pattern_list()) for pack in CustomPack.objects.all()}


def pack_patterns(name: str, custom: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    if name in BUILTIN_PACKS:
        return tuple(BUILTIN_PACKS[name].patterns)
    return custom.get(name, ())


def grant_views_for(*, agent, portal, now=None) -> list[GrantView]:
    """The agent's active grants on the portal, with each pack's method patterns resolved."""
    return grant_views_of(list(active_grants(agent=agent, portal=portal, now=now)))


def grant_views_of(grants: list) -> list[GrantView]:
    """`GrantView`s of grants already read (in pack order), e.g. with the row that needs them."""
    custom = custom_pack_patterns() if any(g.pack not in BUILTIN_PACKS for g in grants) else {}
    return [
        GrantView(
            pack=g.pack, patterns=pack_patterns(g.pack, custom),
            read=g.read_policy, write=g.write_policy, destructive=g.destructive_policy,
        )
        for g in grants
    ]


def known_pack_names() -> set[str]:
    return set(BUILTIN_PACKS) | set(CustomPack.objects.values_list("name", flat=True))


def agent_capabilities(*, agent) -> dict:
    """What an agent may do: per active portal it holds grants on, each grant's pack, its policy
    per risk, expiry and method patterns (`GET /api/v1/capabilities` and the MCP tool)."""
    from apps.portals.models import Portal

    custom = custom_pack_patterns()
    portals = []
    for portal in Portal.objects.filter(grants__agent=agent, is_active=True).distinct().order_by("slug"):
        grants = []
        for grant in active_grants(agent=agent, portal=portal):
            builtin = BUILTIN_PACKS.get(grant.pack)
            grants.append({
                "pack": grant.pack,
                "description": builtin.description if builtin else "custom pack",
                "policy": {"read": grant.read_policy, "write": grant.write_policy,
                           "destructive": grant.destructive_policy},
                "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
                "patterns": list(pack_patterns(grant.pack, custom)),
            })
        portals.append({"portal": portal.slug, "name": portal.name, "grants": grants})
    return {"agent": agent.slug, "portals": portals}
