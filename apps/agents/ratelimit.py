"""Per-agent API rate limit: a fixed one-minute window counted in the cache (Redis in production
through CACHE_URL; per-process memory in the embedded default)."""

import time

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

from apps.core.aio import per_process
from apps.core.exceptions import RateLimited


def _cache():
    """One cache client per process. `django.core.cache.cache` is one per async context under
    ASGI, that is one per request, and a Redis cache would open a new connection for each."""
    return per_process("api-rate-cache", lambda: caches.create_connection("default"))


def _count(cache, key: str, ttl: int) -> int:
    """Add one to the window's count and return it. On Redis one round trip (INCR and EXPIRE in
    a pipeline; Django's `incr` asks EXISTS first, a second one); elsewhere through the cache API."""
    if isinstance(cache, RedisCache):
        full = cache.make_and_validate_key(key)
        pipe = cache._cache.get_client(full, write=True).pipeline(transaction=False)
        count, _ = pipe.incr(full).expire(full, ttl).execute()
        return count
    try:
        return cache.incr(key)  # no add first, but for the window's first request
    except ValueError:  # the window's first request (or its key was evicted)
        return 1 if cache.add(key, 1, timeout=ttl) else cache.incr(key)


def check_rate(agent) -> None:
    limit = settings.API_RATE_PER_MINUTE
    if not limit:
        return
    window = int(time.time() // 60)
    count = _count(_cache(), f"api-rate:{agent.pk}:{window}", ttl=120)
    if count > limit:
        raise RateLimited(f"More than {limit} requests this minute.", retry_after=60 - int(time.time()) % 60)
