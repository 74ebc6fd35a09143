"""Capability packs: named sets of method patterns.

The twelve packs of the source skill (`vrtalex/bitrix24-skill`: core, comms, automation, collab,
content, boards, commerce, services, platform, sites, compliance, diagnostics), extended so that
every documented method (`apps/policy/data/*.csv`) belongs to at least one pack; a test proves it.
Packs overlap on purpose (`crm.automation.*` is in core and automation, `calendar.*` only in
services, `server.time` in core and diagnostics): a grant of either pack covers the method.

Patterns are lowercase globs over normalised method names; `*` matches any run of characters,
dots included (`crm.*` matches `crm.deal.productrows.set`), and is the only wildcard. A pattern
without `*` names one method exactly. Risk never comes from a pack: it comes from
`apps.policy.risk`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType


@dataclass(frozen=True)
class Pack:
    name: str
    description: str
    patterns: tuple[str, ...]


_PACKS: tuple[Pack, ...] = (
    Pack(
        "core",
        "CRM (leads, deals, contacts, companies, items, activities, timeline), tasks, users and company "
        "structure, event handlers and the offline queue, batch, and the basic system calls.",
        (
            "batch",
            "server.time",
            "profile",
            "access.name",
            "user.*",
            "department.*",
            "humanresources.employee.*",
            "humanresources.node.*",
            "crm.*",
            "userfieldconfig.*",
            "tasks.task.*",
            "task.*",
            "event.*",
            "events",
        ),
    ),
    Pack(
        "comms",
        "Chats, notifications, chat-bots, open lines, external-messenger connectors, SMS providers, "
        "mail (REST 3.0) and mail services, telephony and Voximplant calls.",
        (
            "im.*",
            "imbot.*",
            "imopenlines.*",
            "imconnector.*",
            "messageservice.*",
            "telephony.*",
            "voximplant.*",
            "call.*",
            "mail.*",
            "mailservice.*",
            "vote.integration.im.*",
        ),
    ),
    Pack(
        "automation",
        "Business processes, automation rules (robots), app activities, workflow and task templates, "
        "universal lists and RPA.",
        (
            "bizproc.*",
            "crm.automation.*",
            "crm.automatedsolution.*",
            "lists.*",
            "rpa.*",
            "tasks.template.*",
        ),
    ),
    Pack(
        "collab",
        "Workgroups and projects, the news feed (blog posts and comments), polls.",
        (
            "sonet_group.*",
            "socialnetwork.*",
            "log.*",
            "vote.*",
        ),
    ),
    Pack(
        "content",
        "Drive (storages, folders, files, versions, rights), the document generator and Knowledge Base 2.0 (notes).",
        (
            "disk.*",
            "documentgenerator.*",
            "crm.documentgenerator.*",
            "note.*",
        ),
    ),
    Pack(
        "boards",
        "Scrum (backlog, sprints, epics, kanban), task kanban stages, the daily planner and task flows.",
        (
            "tasks.api.scrum.*",
            "task.stages.*",
            "task.planner.*",
            "tasks.flow.*",
        ),
    ),
    Pack(
        "commerce",
        "Online store and catalog: orders, baskets, payments, shipments and deliveries, payment systems, "
        "cash registers, products, prices, warehouses and inventory documents, CRM payments and product rows.",
        (
            "sale.*",
            "catalog.*",
            "salescenter.*",
            "crm.item.payment.*",
            "crm.item.delivery.*",
            "crm.item.productrow.*",
            "crm.productrow.*",
            "crm.product.*",
            "crm.productsection.*",
            "crm.catalog.*",
            "crm.orderentity.*",
            "crm.paysystem.*",
            "crm.persontype.*",
            "crm.vat.*",
            "crm.measure.*",
            "crm.currency.*",
        ),
    ),
    Pack(
        "services",
        "Online booking, calendars (events, sections, resources) and time tracking (work day, schedules, "
        "time control).",
        (
            "booking.*",
            "calendar.*",
            "timeman.*",
        ),
    ),
    Pack(
        "platform",
        "App platform: AI engines, the entity key-value store, BI connector, app options, widget "
        "placements, custom field types, push & pull, the portal event log (REST 3.0).",
        (
            "ai.*",
            "entity.*",
            "biconnector.*",
            "app.option.*",
            "placement.*",
            "userfieldtype.*",
            "pull.*",
            "main.eventlog.*",
        ),
    ),
    Pack(
        "sites",
        "Sites and stores (landing): sites, pages, blocks, templates, repository, roles.",
        ("landing.*",),
    ),
    Pack(
        "compliance",
        "Consent agreements, e-Signature for HR (sign.b2e) and its HR-system integration (hcmlink).",
        (
            "userconsent.*",
            "sign.*",
            "humanresources.hcmlink.*",
        ),
    ),
    Pack(
        "diagnostics",
        "Read-only checks of what the portal offers and what this app may do: methods, scopes, features, "
        "available events, app info, server time, the REST 3.0 OpenAPI document.",
        (
            "method.get",
            "methods",
            "scope",
            "feature.get",
            "events",
            "app.info",
            "server.time",
            "profile",
            "access.name",
            "user.access",
            "user.admin",
            "user.current",
            "rest.scope.list",
            "rest.documentation.openapi",
            "documentation",
        ),
    ),
)

BUILTIN_PACKS: Mapping[str, Pack] = MappingProxyType({pack.name: pack for pack in _PACKS})
PACK_NAMES: tuple[str, ...] = tuple(pack.name for pack in _PACKS)

_PATTERN_CHARS = re.compile(r"[a-z0-9_.*]+")


def clean_pattern(pattern: str) -> str:
    """Trim and lowercase a pattern (custom packs are typed by admins)."""
    return pattern.strip().lower()


def is_valid_pattern(pattern: str) -> bool:
    """Letters, digits, `_`, `.` and `*` only, after `clean_pattern`."""
    return bool(_PATTERN_CHARS.fullmatch(clean_pattern(pattern)))


@lru_cache(maxsize=4096)
def _compile(pattern: str) -> re.Pattern[str]:
    parts = (re.escape(part) for part in clean_pattern(pattern).split("*"))
    return re.compile(".*".join(parts), re.DOTALL)


def pattern_matches(pattern: str, method: str) -> bool:
    """Does the glob `pattern` match the *normalised* method name `method`?

    Matching is case-insensitive on both sides; `*` matches any characters including dots; every
    other character is literal. An empty pattern matches nothing.
    """
    if not isinstance(pattern, str) or not isinstance(method, str) or not pattern.strip():
        return False
    return _compile(pattern).fullmatch(method.lower()) is not None


def matches_any(patterns: Iterable[str], method: str) -> bool:
    return any(pattern_matches(pattern, method) for pattern in patterns)


def packs_for(method: str, extra: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """Names of the built-in packs (in declaration order), then of the `extra` custom packs
    (name -> patterns, in the mapping's order), whose patterns match the normalised `method`."""
    names = [pack.name for pack in _PACKS if matches_any(pack.patterns, method)]
    for name, patterns in (extra or {}).items():
        if name not in names and matches_any(patterns, method):
            names.append(name)
    return names


def patterns_for(pack: str, extra: Mapping[str, Sequence[str]] | None = None) -> tuple[str, ...]:
    """The patterns of a built-in or custom pack; () for an unknown name."""
    if pack in BUILTIN_PACKS:
        return BUILTIN_PACKS[pack].patterns
    return tuple(clean_pattern(p) for p in (extra or {}).get(pack, ()) if p.strip())
