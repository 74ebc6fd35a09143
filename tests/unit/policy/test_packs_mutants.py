"""Tests written against the mutants of apps/policy/packs.py that the policy unit tests let survive
(mutmut 2.5.1, `make mutate MUTATE_ONLY=policy_packs`; bench/README.md lists them)."""

import dataclasses

import pytest

from apps.policy.packs import BUILTIN_PACKS, is_valid_pattern, pattern_matches, patterns_for


def test_patterns_for_a_builtin_pack_are_its_own():
    assert patterns_for("sites") == ("landing.*",)
    assert patterns_for("services", {"services": ["x.*"]}) == ("booking.*", "calendar.*", "timeman.*")


def test_patterns_for_a_custom_pack_are_cleaned_and_blank_ones_dropped():
    extra = {"vendor": [" Vendor.* ", "", "   ", "CRM.Deal.Get"], "other": ["other.*"]}
    assert patterns_for("vendor", extra) == ("vendor.*", "crm.deal.get")
    assert patterns_for("unknown", extra) == ()
    assert patterns_for("unknown") == ()
    assert patterns_for("unknown", None) == ()


@pytest.mark.parametrize(("pattern", "valid"), [
    ("crm.*", True), (" CRM.Deal.* ", True), ("user_field.get", True), ("*", True),
    ("crm.deal?", False), ("crm deal", False), ("crm/deal", False), ("", False), ("crm.[d]eal", False),
])
def test_valid_patterns(pattern, valid):
    assert is_valid_pattern(pattern) is valid


@pytest.mark.parametrize(("pattern", "method"), [(None, "crm.deal.get"), ("crm.*", None), (["crm.*"], "crm.x")])
def test_anything_but_two_strings_matches_nothing(pattern, method):
    assert pattern_matches(pattern, method) is False


def test_the_builtin_packs_cannot_be_changed_at_run_time():
    """No code path (an admin form, a custom pack named like a built-in one) can widen a built-in
    pack in a running process."""
    with pytest.raises(TypeError):
        BUILTIN_PACKS["core"] = BUILTIN_PACKS["sites"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        BUILTIN_PACKS["sites"].patterns = ("*",)
    assert BUILTIN_PACKS["sites"].patterns == ("landing.*",)


def test_each_pack_says_what_it_covers():
    """The description the skill document and the grant listing show for each built-in pack."""
    assert {name: pack.description for name, pack in BUILTIN_PACKS.items()} == {
        "core": (
            "CRM (leads, deals, contacts, companies, items, activities, timeline), tasks, users and "
            "company structure, event handlers and the offline queue, batch, and the basic system "
            "calls."
        ),
        "comms": (
            "Chats, notifications, chat-bots, open lines, external-messenger connectors, SMS "
            "providers, mail (REST 3.0) and mail services, telephony and Voximplant calls."
        ),
        "automation": (
            "Business processes, automation rules (robots), app activities, workflow and task "
            "templates, universal lists and RPA."
        ),
        "collab": "Workgroups and projects, the news feed (blog posts and comments), polls.",
        "content": (
            "Drive (storages, folders, files, versions, rights), the document generator and Knowledge"
            " Base 2.0 (notes)."
        ),
        "boards": (
            "Scrum (backlog, sprints, epics, kanban), task kanban stages, the daily planner and task "
            "flows."
        ),
        "commerce": (
            "Online store and catalog: orders, baskets, payments, shipments and deliveries, payment "
            "systems, cash registers, products, prices, warehouses and inventory documents, CRM "
            "payments and product rows."
        ),
        "services": (
            "Online booking, calendars (events, sections, resources) and time tracking (work day, "
            "schedules, time control)."
        ),
        "platform": (
            "App platform: AI engines, the entity key-value store, BI connector, app options, widget "
            "placements, custom field types, push & pull, the portal event log (REST 3.0)."
        ),
        "sites": "Sites and stores (landing): sites, pages, blocks, templates, repository, roles.",
        "compliance": (
            "Consent agreements, e-Signature for HR (sign.b2e) and its HR-system integration "
            "(hcmlink)."
        ),
        "diagnostics": (
            "Read-only checks of what the portal offers and what this app may do: methods, scopes, "
            "features, available events, app info, server time, the REST 3.0 OpenAPI document."
        ),
    }
