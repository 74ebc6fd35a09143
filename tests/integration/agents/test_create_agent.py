"""`manage.py create_agent`."""

import pytest
from django.core.management.base import CommandError

from apps.agents.models import Agent
from apps.agents.tokens import hash_token
from apps.audit.models import AuditEntry
from apps.policy.models import PackGrant
from tests.integration.cli import run

pytestmark = pytest.mark.django_db


def test_create_agent_prints_token_last(portal):
    out = run("create_agent", "bot", "--portal", "acme", "--packs", "core,diagnostics", "--write", "approve2")
    token = out.strip().splitlines()[-1]
    agent = Agent.objects.get(slug="bot")
    assert agent.token_hash == hash_token(token)
    grants = {g.pack: g for g in PackGrant.objects.filter(agent=agent)}
    assert set(grants) == {"core", "diagnostics"} and grants["core"].write_policy == "approve2"


@pytest.mark.parametrize("args, message", [
    (["--portal", "nope", "--packs", "core"], "No portal"),
    (["--portal", "acme", "--packs", "core,madeup"], "Unknown pack"),
    (["--portal", "acme", "--packs", "core", "--read", "sometimes"], "read is one of"),
    (["--portal", "acme", "--packs", "core", "--owner", "alice"], "No user 'alice' to own the agent: create it first"),
    (["--portal", "acme", "--packs", " , "], "at least one pack"),
])
def test_create_agent_refuses_bad_input(portal, args, message):
    with pytest.raises(CommandError, match=message):
        run("create_agent", "bot", *args)
    assert not Agent.objects.filter(slug="bot").exists()  # nothing half-made


def test_create_agent_with_an_owner(portal, django_user_model):
    alice = django_user_model.objects.create_user("alice")
    run("create_agent", "bot", "--portal", "acme", "--packs", "core", "--owner", "alice")
    assert Agent.objects.get(slug="bot").owner == alice
    assert AuditEntry.objects.get(action="agent.created").data == {"agent": "bot", "owner": "alice"}


def test_create_agent_bad_slug_is_one_line(portal):
    with pytest.raises(CommandError, match="slug") as caught:
        run("create_agent", "not a slug!", "--portal", "acme", "--packs", "core")
    assert "\n" not in str(caught.value) and not Agent.objects.exists()
