"""The per-agent API rate limit counts in Redis (CACHE_URL) through one client per process:
Django's `cache` is one per async context under ASGI, so counting through it opened a Redis
connection for every API request."""

import asyncio
import contextvars
import time

import pytest
import redis.connection

from apps.agents import ratelimit
from tests.integration.core.test_api_stack import asgi_get
from tests.services import needs_postgres, needs_redis_cache

pytestmark = [needs_postgres, needs_redis_cache, pytest.mark.django_db(transaction=True)]


def test_api_requests_under_asgi_share_one_redis_connection_for_the_rate_limit(agent, settings, monkeypatch):
    from controlplane.asgi import application

    settings.API_RATE_PER_MINUTE = 1000
    sockets = []  # Connection.connect runs on every command; _connect only when it opens a socket
    real_connect = redis.connection.Connection._connect
    monkeypatch.setattr(redis.connection.Connection, "_connect",
                        lambda conn: sockets.append(conn) or real_connect(conn))

    async def scenario():  # each request in a task and context of its own, as uvicorn serves them
        return [await asyncio.create_task(asgi_get(application, "/api/v1/capabilities", token=agent.token),
                                          context=contextvars.Context()) for _ in range(20)]

    window = int(time.time() // 60)
    key = f"api-rate:{agent.pk}:{window}"
    before = ratelimit._cache().get(key) or 0  # the database is new each run; Redis is not
    answers = asyncio.run(scenario())
    assert [status for status, _, _ in answers] == [200] * 20
    assert len(sockets) <= 1, len(sockets)  # the process's client connects once (if not already)
    if int(time.time() // 60) == window:  # the count is in Redis, where every web process sees it
        assert ratelimit._cache().get(key) == before + 20


def test_a_request_counts_in_one_round_trip_to_redis_and_the_window_expires(agent, settings, monkeypatch):
    """Django's `incr` asks EXISTS before INCR: two round trips on every API request."""
    settings.API_RATE_PER_MINUTE = 1000
    cache = ratelimit._cache()
    cache.get("warm-up")  # the client connects outside the count
    sent = []
    real_send = redis.connection.Connection.send_packed_command
    monkeypatch.setattr(redis.connection.Connection, "send_packed_command",
                        lambda conn, *a, **kw: sent.append(a) or real_send(conn, *a, **kw))
    window = int(time.time() // 60)
    key = f"api-rate:{agent.pk}:{window}"
    before = cache.get(key) or 0
    sent.clear()
    ratelimit.check_rate(agent)
    assert len(sent) == 1
    if int(time.time() // 60) == window:
        assert cache.get(key) == before + 1
        full = cache.make_and_validate_key(key)
        assert 0 < cache._cache.get_client(full).ttl(full) <= 120
