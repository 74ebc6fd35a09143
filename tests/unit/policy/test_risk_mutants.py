"""Tests written against the mutants of apps/policy/risk.py that the policy unit tests let survive
(mutmut 2.5.1, `make mutate MUTATE_ONLY=policy_risk`; bench/README.md lists them). Documented
methods take the catalog's risk, so the verb rules show on names the catalog does not know: an
undocumented method with a destructive verb must need two approvals, whatever its vendor."""

import pytest

from apps.policy.catalog import lookup
from apps.policy.risk import classify, verb_risk

DESTRUCTIVE_BY_VERB = [
    "vendor.widget.delete", "vendor.widget.removeall", "vendor.widget.unbind", "vendor.widget.unregister",
    "vendor.widget.unsetflag", "vendor.widget.unsubscribe", "vendor.widget.terminate", "vendor.widget.killjob",
    "vendor.widget.clearcache",
    # whole segments, anywhere in the name
    "vendor.widget.markdelete", "vendor.widget.markdeleted", "vendor.widget.reset",
    "vendor.widget.forcecommonscopeforall", "vendor.widget.mergebatch", "vendor.delete.widget",
    # endings of the documented replace-the-whole-set and queue-consuming methods
    "vendor.deal.productrows.set", "vendor.deal.productrow.set", "vendor.deal.items.set",
    "vendor.role.fillaccesses", "vendor.value.modify", "vendor.page.setlandingref", "vendor.page.setsiteref",
    "vendor.access.role.enable", "vendor.queue.offline.get", "vendor.bus.event.get",
]


@pytest.mark.parametrize("method", DESTRUCTIVE_BY_VERB)
def test_an_undocumented_method_with_a_destructive_verb_is_destructive(method):
    assert lookup(method) is None
    assert classify(method) == "destructive"
    assert classify(method.upper(), {"id": 1}) == "destructive"


@pytest.mark.parametrize("method", [
    "vendor.widget.set", "vendor.widget.enable", "vendor.widget.rows.set", "vendor.widget.event.list",
    "vendor.widget.preset", "vendor.widget.unblock", "vendor.widget.kil",
])
def test_an_undocumented_method_without_one_is_a_write(method):
    assert lookup(method) is None
    assert classify(method) == "write"


READ_VERBS = [
    "get", "list", "fields", "getfields", "getlist", "search", "status", "count", "types", "gettypes", "current",
    "info", "tail", "getbyid", "getchildren", "getmanifest", "getrights", "getsettings", "getaccess", "isenabled",
    "isexists", "check", "children", "statuslist", "download", "getpreview", "getversions", "getcontent",
]


@pytest.mark.parametrize("verb", READ_VERBS)
def test_a_read_verb_reads_by_the_verb_rules_but_an_undocumented_name_is_still_a_write(verb):
    """The verb rules (what the catalog was built from) call `<anything>.<read verb>` a read; the
    risk of an undocumented name never trusts it."""
    method = f"vendor.thing.{verb}"
    assert lookup(method) is None
    assert (verb_risk(method), classify(method)) == ("read", "write")


@pytest.mark.parametrize("segment", ["read", "unread", "getexternallink", "getpublicurl", "getforapp"])
def test_a_segment_that_looks_like_a_read_but_has_effects_makes_a_write(segment):
    """`im.notify.read.list` marks messages read: a read verb after such a segment is no read."""
    assert verb_risk(f"vendor.{segment}.get") == "write"
    assert verb_risk(f"vendor.{segment}.list") == "write"
