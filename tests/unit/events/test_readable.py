"""The feed's filter: an event is visible only through a grant covering its entity's read method."""

import pytest

from apps.events.readable import READ_METHOD_BY_PREFIX, may_read, read_method_for
from apps.policy.catalog import lookup
from apps.policy.decide import GrantView
from apps.policy.risk import classify


@pytest.mark.parametrize("method", sorted(set(READ_METHOD_BY_PREFIX.values())))
def test_every_mapped_method_is_a_documented_read(method):
    assert lookup(method) is not None, method
    assert classify(method) == "read"


@pytest.mark.parametrize(("event", "method"), [
    ("ONCRMLEADADD", "crm.lead.get"), ("ONCRMDEALUPDATE", "crm.deal.get"),
    ("ONCRMDEALRECURRINGADD", "crm.deal.recurring.get"), ("ONCRMDYNAMICITEMADD", "crm.item.get"),
    ("ONCRMTIMELINECOMMENTADD", "crm.timeline.comment.get"), ("ONTASKADD", "tasks.task.get"),
    ("ONTASKCOMMENTADD", "task.commentitem.get"), ("ONIMBOTMESSAGEADD", "imbot.bot.list"),
    ("ONAPPUNINSTALL", "app.info"), ("oncrmleadadd", "crm.lead.get"),
])
def test_read_method_for(event, method):
    assert read_method_for(event) == method


def test_unknown_and_internal_events_are_shown_to_nobody():
    everything = [GrantView.builtin(p) for p in ("core", "comms", "platform", "diagnostics")]
    for event in ("ONSOMETHINGNEW", "ONOFFLINEEVENT", ""):
        assert read_method_for(event) is None
        assert not may_read(everything, event)


def test_packs_decide_visibility():
    core = [GrantView.builtin("core")]
    comms = [GrantView.builtin("comms")]
    assert may_read(core, "ONCRMLEADADD") and may_read(core, "ONTASKUPDATE")
    assert not may_read(comms, "ONCRMLEADADD")
    assert may_read(comms, "ONIMBOTMESSAGEADD") and not may_read(core, "ONIMBOTMESSAGEADD")
    assert not may_read([GrantView.builtin("core", read="deny")], "ONCRMLEADADD")
    assert not may_read([], "ONCRMLEADADD")
