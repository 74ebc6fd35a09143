"""The services suite (`make services-test`): real PostgreSQL, a real broker, real workers.

Each module's `pytestmark` names what it needs with the marks below; `.ci/run` fails when any
test here was skipped, so a missing service never passes unnoticed."""

import os
import threading
from contextlib import contextmanager

import pytest

ON_POSTGRES = os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://", "pgsql://"))
ON_BROKER = not os.environ.get("CELERY_BROKER_URL", "memory://").startswith("memory")
ON_REDIS_CACHE = os.environ.get("CACHE_URL", "").startswith(("redis://", "rediss://"))

needs_postgres = pytest.mark.skipif(not ON_POSTGRES, reason="needs DATABASE_URL pointing at PostgreSQL")
needs_broker = pytest.mark.skipif(not ON_BROKER, reason="needs CELERY_BROKER_URL pointing at Redis or RabbitMQ")
needs_redis_cache = pytest.mark.skipif(not ON_REDIS_CACHE, reason="needs CACHE_URL pointing at Redis")


@contextmanager
def held(queryset):
    """The rows of `queryset` locked (`select_for_update`) by another connection, in a thread of its
    own, until the block ends."""
    from django.db import connections, transaction

    holding, release, errors = threading.Event(), threading.Event(), []

    def hold():
        try:
            with transaction.atomic():
                list(queryset.select_for_update())
                holding.set()
                release.wait(30)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))
        finally:
            holding.set()
            connections.close_all()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(30) and errors == []
        yield
    finally:
        release.set()
        holder.join(30)
    assert errors == []
