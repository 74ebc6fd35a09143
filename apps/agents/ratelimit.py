"""Per-agent API rate limit: a fixed one-minute window counted in the cache (Redis in production
through CACHE_URL; per-process memory in the embedded default)."""

import time

from django.conf import settings
from django.core.cache import caches

from apps.core.aio import per_process
from apps.core.exceptions import RateLimited


def _cache():
    """One cache client per process. `django.core.cache.cache` is one per async context under
    ASGI, that is one per request, and a Redis cache would open a new connection for each."""
    return per_process("api-rate-cache", lambda: caches.create_connection("default"))


def check_rate(agent) -> None:
    limit = settings.API_RATE_PER_MINUTE
    if not limit:
        return
    window = int(time.time() // 60)
    key = f"api-rate:{agent.pk}:{window}"
    cache = _cache()
    try:
        count = cache.incr(key)  # no add first, but for the window's first request
    except ValueError:  # the window's first request (or its key was evicted)
        count = 1 if cache.add(key, 1, timeout=120) else cache.incr(key)
    if count > limit:
        raise RateLimited(f"More than {limit} requests this minute.", retry_after=60 - int(time.time()) % 60)
