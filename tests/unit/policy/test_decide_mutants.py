"""Tests written against the mutants of apps/policy/decide.py that the policy unit tests let
survive (mutmut 2.5.1, `make mutate MUTATE_ONLY=policy_decide`; bench/README.md lists them)."""

import itertools

import pytest

from apps.policy.decide import GrantView, Step, decide, describe_method
from apps.policy.errors import PolicyInputError

ORDER = ["auto", "approve", "approve2", "deny", "not_granted"]
APPROVALS = {"auto": 0, "approve": 1, "approve2": 2}


def call_with(outcome, name):
    """A step and the grants that make exactly `outcome` of it (a method only its own grant covers)."""
    method = f"vendor.{name}.list"
    if outcome == "not_granted":
        return Step(name, method, {}), []
    grant = GrantView(f"pack_{name}", (method,), read=outcome, write=outcome, destructive=outcome)
    return Step(name, method, {}), [grant]


@pytest.mark.parametrize(("first", "second"), list(itertools.product(ORDER, repeat=2)))
def test_a_plan_is_as_strict_as_its_strictest_call_in_any_order(first, second):
    step_a, grants_a = call_with(first, "a")
    step_b, grants_b = call_with(second, "b")
    decision = decide(grants_a + grants_b, [step_a, step_b])
    expected = max(first, second, key=ORDER.index)
    assert decision.outcome == expected
    assert decision.allowed is (expected in APPROVALS)
    assert decision.approvals_required == APPROVALS.get(expected, 0)


def test_a_grant_without_policies_reads_freely_and_writes_with_one_or_two_approvals():
    grant = GrantView("custom", ("crm.deal.*",))
    outcomes = [decide([grant], [Step("s", method, params)]).outcome for method, params in [
        ("crm.deal.list", {}), ("crm.deal.add", {"fields": {"TITLE": "x"}}), ("crm.deal.delete", {"id": 1})]]
    assert outcomes == ["auto", "approve", "approve2"]


def test_grants_of_the_wrong_type_are_a_programming_error():
    with pytest.raises(TypeError, match=r"^grants must be GrantView instances, got dict$"):
        decide([{"pack": "core"}], [Step("s", "crm.deal.list", {})])


@pytest.mark.parametrize(("steps", "message"), [
    ("user.current", "steps must be a list."),
    ([], "A plan needs 1 to 50 steps, not 0."),
    ([Step(f"s{i}", "user.current", {}) for i in range(51)], "A plan needs 1 to 50 steps, not 51."),
    ([{"name": "a", "method": "user.current", "params": {}}], "Each step needs a name, a method and params."),
    ([Step("a b", "user.current", {})], "Step names are 1 to 64 letters, digits or '_'."),
    ([Step("a", "user.current", {}), Step("a", "server.time", {})], "Step name 'a' is used twice."),
    ([Step("a", "crm.deal.get", [1, 2])], "params must be an object."),
])
def test_each_bad_plan_is_refused_with_the_message_the_client_reads(steps, message):
    with pytest.raises(PolicyInputError) as caught:
        decide([GrantView.builtin("core")], steps)
    assert caught.value.message == message


def test_max_steps_bounds_the_plan_and_names_the_limit():
    steps = [Step(f"s{i}", "user.current", {}) for i in range(3)]
    assert decide([GrantView.builtin("core")], steps, max_steps=3).outcome == "auto"
    with pytest.raises(PolicyInputError) as caught:
        decide([GrantView.builtin("core")], steps, max_steps=2)
    assert (caught.value.message, caught.value.field) == ("A plan needs 1 to 2 steps, not 3.", "steps")


def test_a_fixed_refusal_names_the_command_it_refuses_and_keeps_the_steps_as_given():
    everything = GrantView("all", ("*",), "auto", "auto", "auto")
    steps = [Step("s1", "batch", {"cmd": {"a": "crm.deal.get?id=1", "b": "batch?cmd[x]=crm.deal.delete%3Fid%3D1"}})]
    decision = decide([everything], steps)
    assert decision.reasons == ("steps.0.params.cmd.b: A batch cannot contain another batch.",)
    assert (decision.risk, decision.missing, decision.steps) == ("write", (), tuple(steps))


def test_every_call_gets_one_reason_naming_its_step_command_and_verdict():
    grants = [GrantView.builtin("core", destructive="deny")]
    steps = [
        Step("look", "crm.deal.list", {}),
        Step("drop", "crm.deal.delete", {"id": 1}),
        Step("sell", "sale.order.add", {"fields": {}}),
        Step("odd", "vendor.thing.do", {}),
        Step("both", "batch", {"cmd": {"a": "crm.deal.get?id=1"}}),
    ]
    decision = decide(grants, steps)
    assert decision.reasons == (
        "step 'look': crm.deal.list (read) granted by core: auto.",
        "step 'drop': crm.deal.delete (destructive) is denied by the destructive policy of core.",
        "step 'sell': sale.order.add (write) is not granted; grant one of: commerce.",
        "step 'odd': vendor.thing.do (write) is not granted; no built-in pack covers it; use a custom pack.",
        "step 'both' command 'a': crm.deal.get (read) granted by core: auto.",
    )
    assert decision.missing == ({"method": "sale.order.add", "packs": ["commerce"]},
                                {"method": "vendor.thing.do", "packs": []})
    assert decision.checked[-1] == {"step": "both", "method": "crm.deal.get", "risk": "read", "pack": "core",
                                    "policy": "auto", "command": "a"}
    assert (decision.outcome, decision.risk, decision.packs) == ("not_granted", "destructive", ("core",))


def test_a_call_several_packs_would_grant_names_them_all():
    decision = decide([GrantView.builtin("comms")], [Step("t", "server.time", {})])
    assert decision.reasons == ("step 't': server.time (read) is not granted; grant one of: core, diagnostics.",)


def test_an_unknown_method_is_described_with_nothing_claimed_about_it():
    assert describe_method([GrantView.builtin("core")], "vendor.thing.get") == {
        "name": "vendor.thing.get", "normalized": "vendor.thing.get", "known": False, "scope": None,
        "risk": "write", "rest3": False, "v2": False, "doc_path": None, "packs": [], "granted": False,
        "granted_by": [], "policy": None}
