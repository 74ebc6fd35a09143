"""The services suite (`make services-test`): real PostgreSQL, a real broker, real workers.

Each module's `pytestmark` names what it needs with the marks below; `.ci/run` fails when any
test here was skipped, so a missing service never passes unnoticed."""

import os

import pytest

ON_POSTGRES = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://", "pgsql://"))
ON_BROKER = not os.environ.get("CELERY_BROKER_URL", "memory://").startswith("memory")
ON_REDIS_CACHE = os.environ.get("CACHE_URL", "").startswith(("redis://", "rediss://"))

needs_postgres = pytest.mark.skipif(not ON_POSTGRES, reason="needs DATABASE_URL pointing at PostgreSQL")
needs_broker = pytest.mark.skipif(not ON_BROKER, reason="needs CELERY_BROKER_URL pointing at Redis or RabbitMQ")
needs_redis_cache = pytest.mark.skipif(not ON_REDIS_CACHE, reason="needs CACHE_URL pointing at Redis")
