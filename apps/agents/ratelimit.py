"""Per-agent API rate limit: a fixed one-minute window counted in the cache (Redis in production
through CACHE_URL; per-process memory in the embedded default)."""

import time

from django.conf import settings
from django.core.cache import cache

from apps.core.exceptions import RateLimited


def check_rate(agent) -> None:
    limit = settings.API_RATE_PER_MINUTE
    if not limit:
        return
    window = int(time.time() // 60)
    key = f"api-rate:{agent.pk}:{window}"
    cache.add(key, 0, timeout=120)
    try:
        count = cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.set(key, 1, timeout=120)
        count = 1
    if count > limit:
        raise RateLimited(f"More than {limit} requests this minute.", retry_after=60 - int(time.time()) % 60)
