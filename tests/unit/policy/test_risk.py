"""Risk: catalog first, verb rules for unknown names (never read), parameters raise."""

import pytest

from apps.policy.catalog import all_methods, lookup
from apps.policy.errors import PolicyForbidden, PolicyInputError
from apps.policy.risk import (
    DESTRUCTIVE,
    READ,
    WRITE,
    base_risk,
    classify,
    deactivates_user,
    max_risk,
    offline_get_keeps_records,
    param_risk,
    verb_risk,
)

R, W, D = READ, WRITE, DESTRUCTIVE

TRICKY = [
    # queue consumers and irreversible verbs
    ("bizproc.workflow.kill", D),
    ("bizproc.workflow.terminate", D),
    ("disk.folder.deleteTree", D),
    ("disk.folder.markDeleted", D),
    ("disk.file.markdeleted", D),
    ("event.offline.get", D),
    ("event.offline.clear", D),
    ("event.offline.error", W),
    ("event.offline.list", R),
    ("im.v2.Event.get", D),
    ("imbot.v2.Event.get", D),
    ("event.unbind", D),
    ("event.bind", W),
    ("event.get", R),
    ("placement.unbind", D),
    ("ai.engine.unregister", D),
    ("imbot.unregister", D),
    ("crm.entity.mergeBatch", D),
    ("crm.deal.details.configuration.reset", D),
    ("crm.item.details.configuration.forceCommonScopeForAll", D),
    ("crm.requisite.preset.get", R),  # "preset" is not "reset"
    # replace-the-whole-set semantics
    ("crm.deal.productrows.set", D),
    ("crm.lead.productrows.set", D),
    ("crm.quote.productrows.set", D),
    ("crm.item.productrow.set", D),
    ("crm.deal.contact.items.set", D),
    ("crm.contact.company.items.set", D),
    ("sale.propertyvalue.modify", D),
    ("sale.shipmentpropertyvalue.modify", W),
    ("catalog.price.modify", D),
    ("documentgenerator.role.fillaccesses", D),
    ("landing.template.setLandingRef", D),
    ("landing.template.setSiteRef", D),
    ("landing.role.enable", D),
    ("user.update", D),
    # looks like a read, is a write
    ("im.notify.read.list", W),
    ("im.notify.read", W),
    ("im.notify.read.all", W),
    ("im.dialog.read", W),
    ("im.dialog.read.all", W),
    ("im.dialog.unread", W),
    ("im.recent.unread", W),
    ("imbot.v2.Chat.Message.read", W),
    ("disk.file.getExternalLink", W),
    ("disk.folder.getExternalLink", W),
    ("crm.invoice.getexternallink", W),
    ("salescenter.payment.getPublicUrl", W),
    ("disk.storage.getForApp", W),
    # writes with real-world cost
    ("voximplant.infocall.startwithtext", W),
    ("voximplant.infocall.startwithsound", W),
    ("telephony.externalCall.register", W),
    ("tasks.task.unmute", W),
    ("tasks.task.favorite.remove", D),
    # plain reads and writes
    ("crm.deal.list", R),
    ("crm.deal.get", R),
    ("crm.deal.fields", R),
    ("user.current", R),
    ("server.time", R),
    ("methods", R),
    ("app.info", R),
    ("crm.deal.add", W),
    ("crm.deal.update", W),
    ("crm.deal.delete", D),
    ("tasks.task.delete", D),
    ("tasks.task.complete", W),
    ("app.option.set", W),
    ("batch", W),  # without params: the catalog's write
    # unknown names: never read
    ("vendor.thing.get", W),
    ("vendor.thing.list", W),
    ("crm.deal.secretlist", W),
    ("crm.deal.fields.extra", W),
    ("vendor.thing", W),
    ("vendor.thing.delete", D),
    ("vendor.thing.removeall", D),
    ("vendor.unsubscribe.get", D),
    ("vendor.thing.clearcache", D),
    ("vendor.thing.reset", D),
    ("vendor.thing.deletetree", D),
    ("vendor.thing.productrows.set", D),
    ("vendor.items.set", D),
    ("vendor.v2.event.get", D),
    ("vendor.role.enable", D),
]


@pytest.mark.parametrize(("method", "expected"), TRICKY)
def test_tricky_names(method, expected):
    assert classify(method) == expected
    # every spelling gives the same answer
    assert classify(f" /{method.upper()}.json ") == expected


def test_the_table_is_big_enough_and_catalog_entries_agree_with_the_catalog():
    assert len(TRICKY) >= 60
    for method, expected in TRICKY:
        info = lookup(method)
        if info is not None:
            assert info.risk == expected, method


def test_catalog_write_rows_never_read():
    """The invariant: nothing the catalog marks write or destructive comes out read."""
    offenders = [m.name for m in all_methods() if m.risk != READ and classify(m.name) == READ]
    assert offenders == []


def test_catalog_rows_keep_their_risk_without_params():
    mismatched = [(m.name, m.risk, classify(m.name)) for m in all_methods() if classify(m.name) != m.risk]
    assert mismatched == []


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"clear": 0},
        {"fields": {"ACTIVE": "Y"}},
        {"ACTIVE": "N"},
        {"cmd": {"a": "crm.deal.get"}},
        {"filter": {"ID": 1}},
    ],
)
def test_no_catalog_write_row_becomes_read_with_params(params):
    for m in all_methods():
        if m.risk == READ or m.normalized == "batch":
            continue
        assert classify(m.name, params) != READ, (m.name, params)


def test_params_never_lower_a_catalog_risk_except_offline_get():
    for m in all_methods():
        if m.normalized in ("batch", "event.offline.get"):
            continue
        for params in ({"clear": 0}, {"ACTIVE": "Y"}, {"fields": {"ACTIVE": "Y"}}):
            assert classify(m.name, params) == m.risk, m.name


def test_verb_rules_explain_most_of_the_catalog():
    """verb_risk is what the catalog was built from; it never calls a documented write a read,
    except the three queue consumers the catalog overrides to destructive."""
    for m in all_methods():
        verb = verb_risk(m.normalized)
        if m.risk != READ and verb == READ:
            assert m.normalized in {"event.offline.get", "im.v2.event.get", "imbot.v2.event.get"}
        if verb == DESTRUCTIVE:
            assert m.risk == DESTRUCTIVE, m.name


def test_unknown_methods_are_never_read():
    for name in ("a.get", "a.list", "x.fields", "x.y.search", "vendor.current", "some.thing.getfields", "zzz"):
        assert lookup(name) is None
        assert verb_risk(name) in (READ, WRITE)
        assert base_risk(name) == WRITE
        assert classify(name, {"anything": 1}) == WRITE


# ---------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (None, D),
        ({}, D),
        ({"clear": 1}, D),
        ({"clear": "1"}, D),
        ({"clear": True}, D),
        ({"clear": ""}, D),
        ({"clear": None}, D),
        ({"clear": [0]}, D),
        ({"clear": "$result[a][clear]"}, D),
        ({"clear": 0, "CLEAR": 1}, D),
        ({"clear ": 0}, W),  # keys are compared trimmed and in any case
        ({"clear": 0}, W),
        ({"clear": "0"}, W),
        ({"clear": " 0 "}, W),
        ({"clear": False}, W),
        ({"CLEAR": 0, "limit": 10}, W),
        ({"Clear": "0", "clear": 0}, W),
    ],
)
def test_event_offline_get_clear(params, expected):
    assert classify("event.offline.get", params) == expected
    assert offline_get_keeps_records(params) is (expected == W)


@pytest.mark.parametrize(
    "params",
    [
        {"ID": 5, "ACTIVE": "N"},
        {"ID": 5, "active": "n"},
        {"ID": 5, "Active": " N "},
        {"ID": 5, "ACTIVE": False},
        {"ID": 5, "ACTIVE": 0},
        {"ID": 5, "ACTIVE": "0"},
        {"ID": 5, "ACTIVE": "false"},
        {"ID": 5, "ACTIVE": ""},
        {"ID": 5, "ACTIVE": None},
        {"ID": 5, "fields": {"ACTIVE": "N"}},
        {"ID": 5, "FIELDS": {"active": "n"}},
        {"ID": 5, "fields": {"ACTIVE": "$result[a][ACTIVE]"}},
        {"ID": 5, "fields": "ACTIVE=N"},  # a shape we cannot read: assume the worst
        {"ID": 5, "ACTIVE": "Y", "active": "N"},
    ],
)
def test_user_update_deactivation_is_destructive(params):
    assert deactivates_user(params)
    assert param_risk("user.update", params) == D
    assert classify("user.update", params) == D


@pytest.mark.parametrize(
    "params", [None, {}, {"ID": 5, "NAME": "x"}, {"ACTIVE": "Y"}, {"ACTIVE": True}, {"fields": {"ACTIVE": 1}}]
)
def test_user_update_without_deactivation_is_not_flagged(params):
    assert not deactivates_user(params)
    assert param_risk("user.update", params) is None
    assert classify("user.update", params) == D  # the catalog's risk stands


def test_param_rules_apply_only_to_their_methods():
    assert param_risk("user.get", {"ACTIVE": "N"}) is None
    assert classify("user.get", {"ACTIVE": "N"}) == R
    assert param_risk("event.offline.list", {"clear": 1}) is None
    assert classify("event.offline.list", {"clear": 1}) == R


@pytest.mark.parametrize(
    ("cmd", "expected"),
    [
        (["crm.deal.get?id=1", "user.current"], R),
        (["crm.deal.get?id=1", "crm.deal.add?fields[TITLE]=x"], W),
        (["crm.deal.get?id=1", "crm.deal.delete?id=1"], D),
        (["event.offline.get"], D),
        (["event.offline.get?clear=0"], W),
        (["event.offline.get?clear=0&CLEAR=1"], D),
        (["event.offline.get?clear[]=0"], D),
        (["event.offline.get?clear%20=0"], D),  # PHP reads the key as "clear_"
        (["user.update?ID=5&fields[ACTIVE]=N"], D),
        (["user.get?ID=5", "vendor.thing.get"], W),
        (["im.notify.read.list?ids[]=1"], W),
        (["disk.folder.DELETETREE.json?id=1"], D),
    ],
)
def test_batch_is_its_riskiest_command(cmd, expected):
    assert classify("batch", {"cmd": cmd}) == expected
    assert classify("batch", {"cmd": {str(i): c for i, c in enumerate(cmd)}, "halt": 1}) == expected


def test_rest3_batch_risk():
    assert classify("batch", [{"method": "tasks.task.get", "query": {"id": 1}}]) == R
    assert classify("batch", [{"method": "tasks.task.get"}, {"method": "tasks.task.delete", "query": {"id": 1}}]) == D
    assert classify("batch", [{"method": "event.offline.get", "query": {"clear": 0}}]) == W


def test_bad_batch_params_raise():
    with pytest.raises(PolicyForbidden):
        classify("batch", {"cmd": ["batch?cmd[0]=crm.deal.delete"]})
    with pytest.raises(PolicyInputError):
        classify("batch", {"cmd": []})
    with pytest.raises(PolicyInputError):
        classify("crm deal get")


def test_max_risk():
    assert max_risk([]) == R
    assert max_risk([R, W]) == W
    assert max_risk([W, D, R]) == D
