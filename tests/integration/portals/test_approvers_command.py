"""`manage.py approvers PORTAL [--add USER ...] [--remove USER ...]`."""

import pytest
from django.core.management.base import CommandError

from apps.audit.models import AuditEntry
from tests.integration.cli import run

pytestmark = pytest.mark.django_db


@pytest.fixture
def users(django_user_model, make_approver):
    return {"alice": make_approver("alice"), "bob": make_approver("bob"),
            "carol": django_user_model.objects.create_user("carol")}


def test_lists_adds_and_removes(portal, users):
    assert run("approvers", "acme").strip() == "Approvers of acme: none"
    out = run("approvers", "acme", "--add", "alice", "bob")
    assert "Added alice, bob." in out and "Approvers of acme: alice, bob" in out
    out = run("approvers", "acme", "--remove", "alice", "--add", "carol")
    assert "Added carol." in out and "Removed alice." in out and "Approvers of acme: bob, carol" in out
    assert "carol lacks the plans.approve_plan permission" in out
    assert set(portal.approvers.values_list("username", flat=True)) == {"bob", "carol"}
    entries = AuditEntry.objects.filter(action="portal.approvers_changed").order_by("seq")
    assert [(e.data["added"], e.data["removed"]) for e in entries] == [
        (["alice", "bob"], []), (["carol"], []), ([], ["alice"])]


def test_nothing_to_change(portal, users):
    run("approvers", "acme", "--add", "alice")
    assert "Nothing to change." in run("approvers", "acme", "--add", "alice")
    assert AuditEntry.objects.filter(action="portal.approvers_changed").count() == 1


@pytest.mark.parametrize("args, message", [
    (["nope"], "No portal 'nope'; the portals are: acme."),
    (["acme", "--add", "alice", "ghost"], "No user 'ghost'"),
    (["acme", "--remove", "ghost"], "No user 'ghost'"),
    (["acme", "--add", "alice", "--remove", "alice"], "both --add and --remove"),
])
def test_unknown_portal_or_user_is_one_line(portal, users, args, message):
    with pytest.raises(CommandError, match=message) as caught:
        run("approvers", *args)
    assert "\n" not in str(caught.value)
    assert not portal.approvers.exists()
