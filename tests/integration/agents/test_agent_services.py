"""Agent services: each writes one audit entry in the same transaction; an owner change (the owner
may not approve the agent's plans) is audited, from the admin too."""

import pytest

from apps.agents import services
from apps.agents.models import Agent
from apps.agents.services import agent_create, agent_revoke, agent_rotate_token, agent_update
from apps.agents.tokens import generate_token, hash_token
from apps.core.exceptions import InvalidRequest
from tests.integration.audit_helpers import failing_after_audit, last_seq, new_entries

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice")


def test_agent_create_rolls_back_with_its_audit_entry():
    with failing_after_audit(services):
        agent_create(slug="bot")
    assert not Agent.objects.exists()


def test_agent_create_refuses_a_bad_slug_or_token():
    with pytest.raises(InvalidRequest, match="slug"):
        agent_create(slug="not a slug!")
    with pytest.raises(InvalidRequest, match="token"):
        agent_create(slug="bot", token="guessable")
    assert not Agent.objects.exists()


def test_agent_create_with_a_given_token():
    token = generate_token()
    agent, returned = agent_create(slug="bot", token=token)
    assert returned == token and agent.token_hash == hash_token(token)


def test_owner_change_is_audited(alice, admin_user):
    agent, _ = agent_create(slug="bot")
    seq = last_seq()
    agent = agent_update(agent=agent, owner=alice, acting_user=admin_user)
    agent_update(agent=agent, owner=alice)  # no change, no entry
    agent_update(agent=agent, name="Bot", owner=None)
    agent.refresh_from_db()
    assert (agent.name, agent.owner) == ("Bot", None)
    entries = new_entries(seq)
    assert [e.action for e in entries] == ["agent.changed", "agent.changed"]
    assert entries[0].actor == admin_user.username
    assert entries[0].data == {"agent": "bot", "owner": {"from": None, "to": "alice"}}
    assert entries[1].data == {"agent": "bot", "name": {"from": "bot", "to": "Bot"},
                               "owner": {"from": "alice", "to": None}}


def test_agent_update_rolls_back_with_its_audit_entry(alice):
    agent, _ = agent_create(slug="bot")
    with failing_after_audit(services):
        agent_update(agent=agent, owner=alice)
    assert Agent.objects.get(pk=agent.pk).owner is None


def test_rotate_and_revoke_roll_back_with_their_audit_entries():
    agent, token = agent_create(slug="bot")
    with failing_after_audit(services):
        agent_rotate_token(agent=agent)
    with failing_after_audit(services):
        agent_revoke(agent=agent)
    agent = Agent.objects.get(pk=agent.pk)
    assert agent.token_hash == hash_token(token) and agent.is_active


def test_rotate_can_reactivate_a_revoked_agent_with_a_new_token():
    agent, old = agent_create(slug="bot")
    agent_revoke(agent=agent)
    seq = last_seq()
    new = agent_rotate_token(agent=agent, reactivate=True)
    agent.refresh_from_db()
    assert agent.is_active and agent.revoked_at is None and agent.token_hash == hash_token(new) != hash_token(old)
    [entry] = new_entries(seq)
    assert entry.action == "agent.token_rotated" and entry.data == {"agent": "bot", "reactivated": True}


def test_owner_change_in_the_admin_is_audited(admin_client, admin_user, alice):
    agent, _ = agent_create(slug="bot")
    seq = last_seq()
    response = admin_client.post(f"/admin/agents/agent/{agent.pk}/change/", {"name": "Bot", "owner": alice.pk})
    assert response.status_code == 302
    agent.refresh_from_db()
    assert (agent.name, agent.owner) == ("Bot", alice)
    [entry] = new_entries(seq)
    assert entry.action == "agent.changed" and entry.actor == admin_user.username
    assert entry.data["owner"] == {"from": None, "to": "alice"}


def test_agents_are_revoked_not_deleted_in_the_admin(admin_client):
    agent, _ = agent_create(slug="bot")
    assert admin_client.post(f"/admin/agents/agent/{agent.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Agent.objects.filter(pk=agent.pk).exists()
