"""Packs: glob semantics, the required members, and full coverage of the documented methods."""

import pytest

from apps.policy.catalog import all_methods
from apps.policy.packs import BUILTIN_PACKS, PACK_NAMES, is_valid_pattern, packs_for, pattern_matches

TWELVE = (
    "core",
    "comms",
    "automation",
    "collab",
    "content",
    "boards",
    "commerce",
    "services",
    "platform",
    "sites",
    "compliance",
    "diagnostics",
)


def test_the_twelve_packs_exist_and_nothing_else():
    assert PACK_NAMES == TWELVE
    for name, pack in BUILTIN_PACKS.items():
        assert pack.name == name
        assert pack.description
        assert pack.patterns
        assert len(set(pack.patterns)) == len(pack.patterns), name
        for pattern in pack.patterns:
            assert pattern == pattern.lower() and is_valid_pattern(pattern), pattern


def test_every_documented_method_is_in_a_pack():
    orphans = [m.name for m in all_methods() if not packs_for(m.normalized)]
    assert orphans == []
    # and both files' names (methods_rest3.csv rows are part of all_methods: rest3=True)
    assert all(packs_for(m.normalized) for m in all_methods() if m.rest3)


def test_every_pattern_matches_some_documented_method():
    names = [m.normalized for m in all_methods()]
    for pack in BUILTIN_PACKS.values():
        for pattern in pack.patterns:
            assert any(pattern_matches(pattern, name) for name in names), (pack.name, pattern)


@pytest.mark.parametrize(
    "method",
    [
        "batch",
        "user.current",
        "server.time",
        "crm.lead.add",
        "crm.deal.list",
        "crm.contact.update",
        "crm.company.delete",
        "tasks.task.add",
        "tasks.task.list",
        "event.bind",
        "event.get",
        "event.unbind",
        "event.offline.get",
        "events",
        "user.get",
        "department.get",
        "humanresources.node.list",
    ],
)
def test_core_members(method):
    assert "core" in packs_for(method)


@pytest.mark.parametrize(
    "method", ["method.get", "methods", "scope", "feature.get", "events", "app.info", "server.time", "rest.scope.list"]
)
def test_diagnostics_members(method):
    assert "diagnostics" in packs_for(method)


def test_diagnostics_is_read_only():
    from apps.policy.catalog import lookup

    for pattern in BUILTIN_PACKS["diagnostics"].patterns:
        assert "*" not in pattern
        assert lookup(pattern).risk == "read", pattern


@pytest.mark.parametrize(
    ("method", "pack"),
    [
        ("im.message.add", "comms"),
        ("imbot.register", "comms"),
        ("voximplant.sip.add", "comms"),
        ("mail.message.send", "comms"),
        ("telephony.externalcall.register", "comms"),
        ("bizproc.workflow.start", "automation"),
        ("rpa.item.add", "automation"),
        ("lists.element.add", "automation"),
        ("tasks.template.add", "automation"),
        ("crm.automation.trigger.add", "automation"),
        ("sonet_group.create", "collab"),
        ("log.blogpost.add", "collab"),
        ("vote.attachedvote.get", "collab"),
        ("disk.file.upload", "content"),
        ("documentgenerator.template.add", "content"),
        ("note.document.add", "content"),
        ("tasks.api.scrum.sprint.start", "boards"),
        ("task.stages.movetask", "boards"),
        ("tasks.flow.flow.create", "boards"),
        ("sale.order.add", "commerce"),
        ("catalog.product.add", "commerce"),
        ("crm.item.payment.pay", "commerce"),
        ("booking.v1.booking.add", "services"),
        ("calendar.event.add", "services"),
        ("timeman.open", "services"),
        ("ai.engine.register", "platform"),
        ("entity.item.add", "platform"),
        ("biconnector.source.add", "platform"),
        ("placement.bind", "platform"),
        ("main.eventlog.list", "platform"),
        ("landing.site.add", "sites"),
        ("landing.role.enable", "sites"),
        ("userconsent.consent.add", "compliance"),
        ("sign.b2e.document.send", "compliance"),
        ("humanresources.hcmlink.company.add", "compliance"),
    ],
)
def test_pack_of(method, pack):
    assert pack in packs_for(method)


def test_compliance_does_not_leak_into_core():
    assert "core" not in packs_for("humanresources.hcmlink.company.add")
    assert "core" not in packs_for("sale.order.add")
    assert packs_for("landing.site.add") == ["sites"]


def test_star_matches_across_dots_and_nothing_else_is_a_wildcard():
    assert pattern_matches("crm.*", "crm.deal.productrows.set")
    assert pattern_matches("crm.*", "crm.x")
    assert not pattern_matches("crm.*", "crm")
    assert not pattern_matches("crm.*", "crmx.deal.get")
    assert pattern_matches("*.get", "a.b.c.get")
    assert pattern_matches("*", "anything.at.all")
    assert not pattern_matches("crm.?eal.get", "crm.deal.get")  # ? is literal
    assert not pattern_matches("crm.[d]eal.get", "crm.deal.get")  # no character classes
    assert pattern_matches("crm.deal.get", "crm.deal.get")
    assert not pattern_matches("crm.deal.get", "crm.deal.getx")
    assert not pattern_matches("crm.deal.get", "xcrm.deal.get")
    assert not pattern_matches("user.current", "user.currently")


def test_exact_names_do_not_grant_their_prefixes():
    assert not pattern_matches("tasks.task.*", "tasks.taskx.add")
    assert not pattern_matches("task.*", "tasks.task.add")
    assert packs_for("tasks.api.scrum.sprint.add") == ["boards"]


def test_matching_is_case_insensitive_on_both_sides():
    assert pattern_matches("CRM.*", "crm.deal.get")
    assert pattern_matches(" crm.* ", "CRM.Deal.Get")


def test_empty_patterns_match_nothing():
    assert not pattern_matches("", "crm.deal.get")
    assert not pattern_matches("   ", "crm.deal.get")


def test_custom_packs_in_extra():
    extra = {"vendor": ["vendor.*"], "deals_read": ["crm.deal.get", "crm.deal.list"]}
    assert packs_for("vendor.thing.get", extra) == ["vendor"]
    assert packs_for("crm.deal.get", extra) == ["core", "deals_read"]
    assert packs_for("crm.deal.add", extra) == ["core"]
    assert packs_for("other.thing", extra) == []
