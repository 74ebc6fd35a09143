"""The submission's two lookups run as fixed statements (apps.core.sql), not ORM queries: the
agent by its bearer token, and the portal with the agent's active grants on it. They must answer
exactly what the ORM's queries answered. Also run against PostgreSQL by the services suite
(tests/services/test_hot_lookups_postgres.py), where the statements are prepared."""

import datetime

import pytest
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.agents import auth
from apps.agents.models import Agent
from apps.core.exceptions import NotFound, Unauthenticated
from apps.plans import services
from apps.plans.evaluation import grant_views_from
from apps.policy.models import PackGrant
from apps.policy.services import grant_upsert
from apps.portals.models import Portal
from apps.portals.services import portal_upsert

pytestmark = pytest.mark.django_db


def bearer(token):
    return RequestFactory().get("/api/v1/plans", HTTP_AUTHORIZATION=f"Bearer {token}")


def test_the_agent_comes_back_as_the_orm_loads_it_without_its_callback_secret(make_agent):
    agent = make_agent()
    found = auth.authenticate_agent(bearer(agent.token))
    stored = Agent.objects.get(pk=agent.pk)
    for field in ("id", "slug", "name", "owner_id", "token_prefix", "is_active", "revoked_at",
                  "created_at", "updated_at"):
        assert getattr(found, field) == getattr(stored, field), field
    assert found.created_at.tzinfo is not None
    assert stored.last_used_at is not None  # the first use was recorded
    assert "callback_secret" in found.get_deferred_fields()
    assert found.callback_secret == stored.callback_secret  # still readable: one query when asked
    assert found._state.adding is False and found._state.db == "default"


def test_a_revoked_or_unknown_token_is_refused(make_agent):
    agent = make_agent()
    Agent.objects.filter(pk=agent.pk).update(is_active=False)
    with pytest.raises(Unauthenticated):
        auth.authenticate_agent(bearer(agent.token))
    with pytest.raises(Unauthenticated):
        auth.authenticate_agent(bearer("b24cp_" + "x" * 40))


def test_the_portal_comes_with_exactly_the_active_grants(make_agent, portal):
    agent = make_agent(portal=portal, packs=("core", "comms", "collab"))
    past = timezone.now() - datetime.timedelta(minutes=1)
    PackGrant.objects.filter(agent=agent, pack="collab").update(expires_at=past)
    PackGrant.objects.filter(agent=agent, pack="comms").update(
        expires_at=timezone.now() + datetime.timedelta(days=1), write_policy="deny")
    other = make_agent("agent-b", portal=portal, packs=("boards",))

    found = services.portal_for_agent(agent=agent, slug="acme")

    stored = Portal.objects.get(pk=portal.pk)
    for field in Portal._meta.concrete_fields:
        assert getattr(found, field.attname) == getattr(stored, field.attname), field.name
    assert sorted(row["pack"] for row in found.grant_rows) == ["comms", "core"]  # decoded, as the ORM's JSONField
    views = grant_views_from(found.grant_rows)
    assert [(v.pack, v.write) for v in views] == [("comms", "deny"), ("core", "approve")]
    assert found.grant_rows_agent == agent.pk
    assert [v.pack for v in grant_views_from(services.portal_for_agent(agent=other, slug="acme").grant_rows)] \
        == ["boards"]


def test_a_portal_with_only_expired_grants_is_found_with_none_active(make_agent, portal):
    """Like the ORM query: the portal is the agent's (it holds a grant), and no grant is active,
    so the policy answers not_granted rather than 'no such portal'."""
    agent = make_agent(portal=portal, packs=("core",))
    PackGrant.objects.filter(agent=agent).update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    found = services.portal_for_agent(agent=agent, slug="acme")
    assert grant_views_from(found.grant_rows) == []


@pytest.mark.parametrize("case", ["no grant", "inactive", "unknown slug"])
def test_a_portal_the_agent_may_not_see_answers_like_a_missing_one(make_agent, portal, case):
    agent = make_agent(portal=portal if case != "no grant" else None)
    other, _ = portal_upsert(slug="other", base_url="https://other.bitrix24.com", auth_mode="webhook",
                             secrets={"webhook_code": "c" * 20}, fields={"webhook_user_id": "1"})
    grant_upsert(agent=agent, portal=other, pack="core")  # a grant elsewhere does not count here
    if case == "inactive":
        Portal.objects.filter(pk=portal.pk).update(is_active=False)
    slug = "nope" if case == "unknown slug" else "acme"
    with pytest.raises(NotFound) as raised:
        services.portal_for_agent(agent=agent, slug=slug)
    assert raised.value.extra["field"] == "portal"


def test_each_lookup_is_one_statement_and_shows_in_the_query_log(make_agent, portal):
    agent = make_agent(portal=portal)
    auth.authenticate_agent(bearer(agent.token))  # the first use records last_used_at
    with CaptureQueriesContext(connection) as captured:
        auth.authenticate_agent(bearer(agent.token))
        services.portal_for_agent(agent=agent, slug="acme")
    assert len(captured.captured_queries) == 2
    assert "token_hash" in captured.captured_queries[0]["sql"]
    assert "EXISTS" in captured.captured_queries[1]["sql"]
