"""Agent tokens in the admin: created, rotated and revoked through the services, the token shown
once (not cached, never listed), the old token dead after rotation, each step audited."""

import re

import pytest

from apps.agents.models import Agent
from apps.audit.models import AuditEntry

pytestmark = pytest.mark.django_db
AGENTS = "/admin/agents/agent/"


def token_of(response):
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    return re.search(r'<pre id="agent-token"[^>]*>([^<]+)</pre>', response.content.decode()).group(1).strip()


def entries_after(pk):
    return list(AuditEntry.objects.filter(pk__gt=pk).order_by("pk"))


def last_pk():
    entry = AuditEntry.objects.order_by("-pk").first()
    return entry.pk if entry else 0


def authenticated(client, token):
    return client.get("/api/v1/capabilities", HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200


def test_create_rotate_revoke_in_the_admin(admin_client, admin_user, client):
    mark = last_pk()
    token = token_of(admin_client.post(f"{AGENTS}add/", {"slug": "bot-1", "name": "Bot"}))
    agent = Agent.objects.get(slug="bot-1")
    assert agent.token_hash and token not in agent.token_hash and token.startswith(agent.token_prefix)
    assert authenticated(client, token)
    assert [(e.action, e.actor, e.data["agent"]) for e in entries_after(mark)] == [
        ("agent.created", admin_user.username, "bot-1")]
    listing = "".join(admin_client.get(path).content.decode() for path in (AGENTS, f"{AGENTS}{agent.pk}/change/"))
    assert token not in listing and agent.token_prefix in listing

    mark = last_pk()
    new = token_of(admin_client.post(AGENTS, {"action": "rotate_token", "_selected_action": [agent.pk]}))
    assert new != token
    assert not authenticated(client, token) and authenticated(client, new)
    assert [(e.action, e.actor) for e in entries_after(mark)] == [("agent.token_rotated", admin_user.username)]

    mark = last_pk()
    response = admin_client.post(AGENTS, {"action": "revoke_selected", "_selected_action": [agent.pk]}, follow=True)
    assert "Revoked 1 agent(s)." in response.content.decode()
    agent.refresh_from_db()
    assert not agent.is_active and agent.revoked_at is not None
    assert not authenticated(client, new)
    assert [(e.action, e.actor) for e in entries_after(mark)] == [("agent.revoked", admin_user.username)]


def test_rotation_needs_exactly_one_agent_and_agents_are_not_deleted(admin_client):
    for slug in ("a1", "a2"):
        admin_client.post(f"{AGENTS}add/", {"slug": slug})
    hashes = dict(Agent.objects.values_list("slug", "token_hash"))
    mark = last_pk()
    response = admin_client.post(AGENTS, {"action": "rotate_token",
                                          "_selected_action": list(Agent.objects.values_list("pk", flat=True))},
                                 follow=True)
    assert "Select exactly one agent." in response.content.decode()
    assert dict(Agent.objects.values_list("slug", "token_hash")) == hashes and entries_after(mark) == []
    agent = Agent.objects.get(slug="a1")
    assert admin_client.post(f"{AGENTS}{agent.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Agent.objects.filter(pk=agent.pk).exists()


def test_a_taken_slug_is_a_form_error_not_a_second_agent(admin_client):
    admin_client.post(f"{AGENTS}add/", {"slug": "dup"})
    mark = last_pk()
    response = admin_client.post(f"{AGENTS}add/", {"slug": "dup"})
    assert response.status_code == 200 and "exists already" in response.content.decode()
    assert Agent.objects.filter(slug="dup").count() == 1 and entries_after(mark) == []
