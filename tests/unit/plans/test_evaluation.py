"""The pure helpers services and the executor share: content hash and the status after submit."""

import pytest

from apps.plans.evaluation import content_hash, normalized_steps, status_after_submit
from apps.policy.decide import GrantView, Step, decide

STEPS = [{"name": "call", "method": "crm.lead.add", "params": {"fields": {"TITLE": "x", "OPENED": "Y"}}}]


def test_content_hash_is_canonical_and_binds_portal_and_steps():
    reordered = [{"params": {"fields": {"OPENED": "Y", "TITLE": "x"}}, "method": "crm.lead.add", "name": "call"}]
    first = content_hash(portal_slug="acme", steps=STEPS)
    assert len(first) == 64
    assert content_hash(portal_slug="acme", steps=reordered) == first
    assert content_hash(portal_slug="other", steps=STEPS) != first
    changed = [{**STEPS[0], "params": {"fields": {"TITLE": "y", "OPENED": "Y"}}}]
    assert content_hash(portal_slug="acme", steps=changed) != first


@pytest.mark.parametrize("policy, expected", [("auto", "approved"), ("approve", "pending_approval"),
                                              ("approve2", "pending_approval")])
def test_no_approvals_needed_means_approved(policy, expected):
    decision = decide([GrantView.builtin("core", write=policy)], [Step("call", "crm.lead.add", {})])
    assert decision.allowed
    assert status_after_submit(decision) == expected


def test_normalized_steps_are_what_the_policy_checked():
    decision = decide([GrantView.builtin("core")], [Step("call", "/CRM.Lead.List.json", {"select": ["ID"]})])
    assert normalized_steps(decision) == [{"name": "call", "method": "crm.lead.list", "params": {"select": ["ID"]}}]
