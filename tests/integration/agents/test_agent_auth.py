"""Bearer authentication records when an agent was last seen, at most once a minute, and never
fails a request over that bookkeeping."""

import datetime

import pytest
from django.db import OperationalError, transaction
from django.test import RequestFactory
from django.utils import timezone

from apps.agents import auth
from apps.agents.models import Agent

pytestmark = pytest.mark.django_db


def request_with(token):
    return RequestFactory().get("/api/v1/plans", HTTP_AUTHORIZATION=f"Bearer {token}")


def test_first_use_is_recorded_and_a_second_within_the_minute_is_not(make_agent, django_assert_num_queries):
    agent = make_agent()
    assert auth.authenticate_agent(request_with(agent.token)).pk == agent.pk
    seen = Agent.objects.get(pk=agent.pk).last_used_at
    assert seen is not None
    with django_assert_num_queries(1):  # the lookup only
        auth.authenticate_agent(request_with(agent.token))
    assert Agent.objects.get(pk=agent.pk).last_used_at == seen


def test_use_after_the_minute_is_recorded_again(make_agent):
    agent = make_agent()
    old = timezone.now() - datetime.timedelta(minutes=5)
    Agent.objects.filter(pk=agent.pk).update(last_used_at=old)
    auth.authenticate_agent(request_with(agent.token))
    assert Agent.objects.get(pk=agent.pk).last_used_at > old


@pytest.mark.parametrize("in_transaction", [False, True])
def test_a_refused_touch_does_not_fail_the_request(make_agent, monkeypatch, caplog, in_transaction):
    agent = make_agent()

    def refuse(self, **fields):
        raise OperationalError("database table is locked: agents_agent")

    monkeypatch.setattr(type(Agent.objects.filter(pk=agent.pk)), "update", refuse)
    if in_transaction:
        with transaction.atomic():
            assert auth.authenticate_agent(request_with(agent.token)).pk == agent.pk
            assert Agent.objects.filter(pk=agent.pk).exists()  # the caller's transaction still works
    else:
        assert auth.authenticate_agent(request_with(agent.token)).pk == agent.pk
    assert "last_used_at not recorded" in caplog.text
