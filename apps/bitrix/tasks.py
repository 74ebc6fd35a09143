"""Celery adapters of the transport (ids in, nothing secret in the message).

`bench_call` exists for bench/limiter_bench.py: one read call through the real client, limiter
and refresh path. A NotSent (our limiter deferring, QUERY_LIMIT_EXCEEDED, a connection refused)
is retried with the countdown the error asks for; nothing else is retried (reads only: a method
the catalog does not call `read` is refused)."""

import logging

from celery import shared_task

from apps.policy.catalog import lookup

from .client import BitrixClient
from .errors import NotSent

logger = logging.getLogger(__name__)


@shared_task(bind=True, max_retries=50, ignore_result=True)
def bench_call(self, portal_id: int, method: str):
    info = lookup(method)
    if info is None or info.risk != "read":
        logger.error("bench_call refuses %s: not a read method", method)
        return "refused"
    try:
        BitrixClient(portal_id).call(method, {})
    except NotSent as exc:
        raise self.retry(countdown=max(0.05, exc.retry_after or 1.0)) from None
    return "ok"
