"""decide(): every outcome, the combination rule, batch sub-commands, and describe_method()."""

import pytest

from apps.policy.decide import Decision, GrantView, Step, decide, describe_method
from apps.policy.errors import PolicyInputError
from apps.policy.packs import BUILTIN_PACKS


def core(**policies):
    return GrantView.builtin("core", **policies)


def one(method, params=None, name="s1"):
    return [Step(name, method, params if params is not None else {})]


def test_read_is_auto_with_default_policies():
    d = decide([core()], one("CRM.Deal.List.json", {"filter": {">ID": 5}}))
    assert isinstance(d, Decision)
    assert (d.allowed, d.outcome, d.risk, d.approvals_required) == (True, "auto", "read", 0)
    assert d.steps == (Step("s1", "crm.deal.list", {"filter": {">ID": 5}}),)
    assert d.packs == ("core",)
    assert d.missing == ()
    assert d.checked == ({"step": "s1", "method": "crm.deal.list", "risk": "read", "pack": "core", "policy": "auto"},)
    assert len(d.reasons) == 1 and "crm.deal.list" in d.reasons[0]


def test_write_needs_one_approval():
    d = decide([core()], one("crm.deal.add", {"fields": {"TITLE": "x"}}))
    assert (d.allowed, d.outcome, d.risk, d.approvals_required) == (True, "approve", "write", 1)


def test_destructive_needs_two_approvals():
    d = decide([core()], one("crm.deal.delete", {"id": 1}))
    assert (d.allowed, d.outcome, d.risk, d.approvals_required) == (True, "approve2", "destructive", 2)


def test_deny_policy():
    d = decide([core(destructive="deny")], one("crm.deal.delete", {"id": 1}))
    assert (d.allowed, d.outcome, d.risk, d.approvals_required) == (False, "deny", "destructive", 0)
    assert d.checked[0]["policy"] == "deny"
    assert d.packs == ()
    assert "denied" in d.reasons[0]


def test_not_granted_names_the_pack_that_would_grant_it():
    d = decide([core()], one("sale.order.add", {"fields": {}}))
    assert (d.allowed, d.outcome, d.approvals_required) == (False, "not_granted", 0)
    assert d.risk == "write"
    assert d.missing == ({"method": "sale.order.add", "packs": ["commerce"]},)
    assert d.checked[0]["pack"] is None and d.checked[0]["policy"] is None


def test_not_granted_for_an_unknown_method_lists_no_builtin_pack():
    d = decide([core()], one("vendor.thing.get"))
    assert d.outcome == "not_granted"
    assert d.missing == ({"method": "vendor.thing.get", "packs": []},)
    assert "custom pack" in d.reasons[0]


def test_no_grants_at_all():
    d = decide([], one("user.current"))
    assert d.outcome == "not_granted"
    assert d.missing == ({"method": "user.current", "packs": ["core", "diagnostics"]},)


def test_custom_pack_grants_unknown_method_as_write():
    vendor = GrantView("vendor", ("vendor.*",), read="auto", write="auto", destructive="deny")
    d = decide([vendor], one("vendor.thing.get"))
    assert (d.allowed, d.outcome, d.risk, d.packs) == (True, "auto", "write", ("vendor",))
    d = decide([vendor], one("vendor.thing.delete"))
    assert (d.allowed, d.outcome, d.risk) == (False, "deny", "destructive")


def test_plan_outcome_is_the_strictest_and_risk_the_highest():
    steps = [
        Step("a", "crm.deal.get", {"id": 1}),
        Step("b", "crm.deal.update", {"id": 1, "fields": {"TITLE": "x"}}),
        Step("c", "user.current", {}),
    ]
    d = decide([core()], steps)
    assert (d.outcome, d.risk, d.approvals_required) == ("approve", "write", 1)
    assert [c["step"] for c in d.checked] == ["a", "b", "c"]
    steps.append(Step("d", "crm.deal.delete", {"id": 1}))
    d = decide([core()], steps)
    assert (d.outcome, d.risk, d.approvals_required) == ("approve2", "destructive", 2)
    d = decide([core(write="deny")], steps)
    assert (d.allowed, d.outcome) == (False, "deny")


def test_not_granted_wins_over_deny_and_both_are_reported():
    steps = [Step("a", "crm.deal.delete", {"id": 1}), Step("b", "sale.order.delete", {"id": 1})]
    d = decide([core(destructive="deny")], steps)
    assert d.outcome == "not_granted"
    assert d.missing == ({"method": "sale.order.delete", "packs": ["commerce"]},)
    assert any("denied" in r for r in d.reasons)


def test_most_permissive_non_deny_grant_wins():
    # crm.product.* is in core and commerce
    strict = GrantView.builtin("core", read="approve", write="approve2", destructive="deny")
    lenient = GrantView.builtin("commerce", read="auto", write="approve", destructive="approve2")
    d = decide([strict, lenient], one("crm.product.delete", {"id": 1}))
    assert (d.outcome, d.packs) == ("approve2", ("commerce",))
    assert d.checked[0]["pack"] == "commerce"
    d = decide([strict, lenient], one("crm.product.list"))
    assert (d.outcome, d.packs) == ("auto", ("commerce",))
    # a method only the strict grant covers keeps its policy
    d = decide([strict, lenient], one("crm.deal.delete", {"id": 1}))
    assert (d.outcome, d.checked[0]["pack"]) == ("deny", "core")


def test_deny_only_if_every_matching_grant_denies():
    a = GrantView.builtin("core", destructive="deny")
    b = GrantView.builtin("commerce", destructive="deny")
    d = decide([a, b], one("crm.product.delete", {"id": 1}))
    assert d.outcome == "deny"


def test_unknown_policy_strings_count_as_deny():
    d = decide([GrantView("core", BUILTIN_PACKS["core"].patterns, read="yes please")], one("crm.deal.list"))
    assert d.outcome == "deny"


def test_ties_pick_the_first_grant():
    a = GrantView("first", ("crm.*",))
    b = GrantView("second", ("crm.deal.*",))
    assert decide([a, b], one("crm.deal.list")).packs == ("first",)
    assert decide([b, a], one("crm.deal.list")).packs == ("second",)


# ---------------------------------------------------------------- batch


def test_batch_commands_are_checked_like_top_level_calls():
    cmd = {"deal": "crm.deal.get?id=1", "order": "sale.order.add?fields[LID]=s1"}
    d = decide([core()], one("batch", {"cmd": cmd}))
    assert d.outcome == "not_granted"
    assert d.missing == ({"method": "sale.order.add", "packs": ["commerce"]},)
    assert [(c["command"], c["method"], c["policy"]) for c in d.checked] == [
        ("deal", "crm.deal.get", "auto"),
        ("order", "sale.order.add", None),
    ]
    d = decide([core(), GrantView.builtin("commerce")], one("batch", {"cmd": cmd}))
    assert (d.allowed, d.outcome, d.risk) == (True, "approve", "write")
    assert d.packs == ("core", "commerce")


def test_batch_wrapper_needs_no_grant_of_its_own():
    commerce = GrantView.builtin("commerce")
    d = decide([commerce], one("batch", {"cmd": ["sale.order.list", "catalog.product.list"]}))
    assert (d.allowed, d.outcome, d.risk) == (True, "auto", "read")
    assert all(c["method"] != "batch" for c in d.checked)


def test_batch_is_as_risky_as_its_riskiest_command():
    cmd = ["crm.deal.list", "crm.deal.delete?id=1"]
    d = decide([core()], one("batch", {"cmd": cmd}))
    assert (d.risk, d.outcome, d.approvals_required) == ("destructive", "approve2", 2)


def test_batch_steps_come_back_with_normalised_command_names():
    d = decide([core()], one("BATCH.json", {"cmd": {"a": " /CRM.Deal.Get.json?id=1"}, "halt": True}))
    assert d.steps == (Step("s1", "batch", {"cmd": {"a": "crm.deal.get?id=1"}, "halt": 1}),)


def test_batch_params_reach_the_risk_rules():
    grant = core(read="auto", write="auto", destructive="deny")
    assert decide([grant], one("batch", {"cmd": ["event.offline.get?clear=0"]})).outcome == "auto"
    assert decide([grant], one("batch", {"cmd": ["event.offline.get"]})).outcome == "deny"
    assert decide([grant], one("event.offline.get", {"clear": 0})).outcome == "auto"
    assert decide([grant], one("event.offline.get", {})).outcome == "deny"


def test_rest3_batch_step():
    d = decide([core()], one("batch", [{"method": "Tasks.Task.Get", "query": {"id": 1}}]))
    assert (d.outcome, d.risk) == ("auto", "read")
    assert d.steps[0].params == [{"method": "tasks.task.get", "query": {"id": 1}}]


@pytest.mark.parametrize(
    "params",
    [
        {"cmd": {"a": "crm.deal.get?id=1", "b": "batch?cmd[x]=crm.deal.delete%3Fid%3D1"}},
        {"cmd": {"a": "crm.deal.get?id=1", "b": "$result[a][METHOD]?id=1"}},
        [{"method": "batch", "query": {}}],
    ],
)
def test_fixed_refusals_are_a_deny_decision(params):
    everything = GrantView("all", ("*",), "auto", "auto", "auto")
    d = decide([everything], one("batch", params))
    assert (d.allowed, d.outcome, d.approvals_required) == (False, "deny", 0)
    assert d.checked == () and d.packs == ()
    assert d.reasons and ("batch" in d.reasons[0] or "$result" in d.reasons[0])


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("steps", "field"),
    [
        ([], "steps"),
        ([Step(f"s{i}", "user.current", {}) for i in range(51)], "steps"),
        ("user.current", "steps"),
        (None, "steps"),
        ([{"name": "a", "method": "user.current", "params": {}}], "steps.0"),
        ([Step("", "user.current", {})], "steps.0.name"),
        ([Step("a b", "user.current", {})], "steps.0.name"),
        ([Step("x" * 65, "user.current", {})], "steps.0.name"),
        ([Step(5, "user.current", {})], "steps.0.name"),
        ([Step("a", "user.current", {}), Step("a", "server.time", {})], "steps.1.name"),
        ([Step("a", "crm deal get", {})], "steps.0.method"),
        ([Step("a", "", {})], "steps.0.method"),
        ([Step("a", None, {})], "steps.0.method"),
        ([Step("a", "crm.deal.get.xml", {})], "steps.0.method"),
        ([Step("a", "crm.deal.get", [1, 2])], "steps.0.params"),
        ([Step("a", "crm.deal.get", "id=1")], "steps.0.params"),
        ([Step("a", "batch", {"cmd": []})], "steps.0.params.cmd"),
        ([Step("a", "batch", {"cmd": [f"user.current?{i}" for i in range(51)]})], "steps.0.params.cmd"),
        ([Step("a", "batch", {"cmd": {"x": "crm.deal.get?id=%zz"}})], "steps.0.params.cmd.x"),
    ],
)
def test_invalid_input_raises_policy_input_error(steps, field):
    with pytest.raises(PolicyInputError) as info:
        decide([core()], steps)
    assert info.value.field == field
    assert info.value.status == 400


def test_max_steps_is_configurable_and_fifty_is_fine():
    steps = [Step(f"s{i}", "user.current", {}) for i in range(50)]
    assert decide([core()], steps).outcome == "auto"
    with pytest.raises(PolicyInputError):
        decide([core()], steps[:3], max_steps=2)


def test_none_params_mean_empty():
    d = decide([core()], [Step("a", "user.current", None)])
    assert d.steps[0].params == {}


# ---------------------------------------------------------------- describe_method


def test_describe_known_granted_method():
    info = describe_method([core(), GrantView.builtin("content")], " /Disk.File.GetExternalLink.json")
    assert info == {
        "name": "disk.file.getExternalLink",
        "normalized": "disk.file.getexternallink",
        "known": True,
        "scope": "disk",
        "risk": "write",
        "rest3": False,
        "v2": True,
        "doc_path": "api-reference/disk/file/disk-file-get-external-link.md",
        "packs": ["content"],
        "granted": True,
        "granted_by": ["content"],
        "policy": "approve",
    }


def test_describe_not_granted_and_unknown():
    info = describe_method([core()], "sale.order.add")
    assert (info["granted"], info["granted_by"], info["policy"], info["packs"]) == (False, [], None, ["commerce"])
    info = describe_method([], "vendor.thing.get")
    assert info["known"] is False and info["risk"] == "write" and info["packs"] == [] and info["scope"] is None
    assert info["name"] == "vendor.thing.get"


def test_describe_lists_every_matching_grant_and_the_winning_policy():
    a = GrantView.builtin("core", destructive="deny")
    b = GrantView.builtin("commerce", destructive="approve2")
    info = describe_method([a, b], "crm.product.delete")
    assert info["granted_by"] == ["core", "commerce"]
    assert info["policy"] == "approve2"
    assert info["packs"] == ["core", "commerce"]


def test_describe_uses_params_for_risk():
    assert describe_method([core()], "event.offline.get")["risk"] == "destructive"
    assert describe_method([core()], "event.offline.get", {"clear": 0})["risk"] == "write"
    assert describe_method([core()], "batch", {"cmd": ["crm.deal.list"]})["risk"] == "read"


def test_describe_rejects_bad_names():
    with pytest.raises(PolicyInputError):
        describe_method([core()], "crm.deal.get?x=1")
