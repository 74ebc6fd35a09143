"""Cross-process guarantee of the shared limiter (real PostgreSQL, forked processes).

Four processes take slots of one portal's bucket at the same time; every "send" time is
recorded and replayed through the portal's own admission rule (apps.core.leakybucket.admit):
the portal must never see the bucket above its burst. No timing is asserted beyond that."""

import multiprocessing
import time

import pytest

from apps.core.leakybucket import BucketState, admit
from tests.services import needs_postgres

pytestmark = [
    pytest.mark.services,
    needs_postgres,
    pytest.mark.django_db(transaction=True),
]

RATE, BURST, PROCS, CALLS = 20.0, 10, 4, 15


def _worker(portal_id, calls, queue):
    from django.db import connections

    from apps.bitrix import limiter

    sent = []
    try:
        for _ in range(calls):
            limiter.limiter_acquire(portal_id=portal_id, rate=RATE, burst=BURST)
            sent.append(time.time())
        queue.put(("ok", sent))
    except Exception as exc:  # noqa: BLE001
        queue.put(("error", repr(exc)))
    finally:
        connections.close_all()


def test_shared_limiter_never_exceeds_burst_across_processes():
    from django.db import connections

    from apps.bitrix.models import PortalLimiter
    from apps.portals.models import Portal

    portal = Portal.objects.create(
        slug="limited", base_url="https://limited.example", rate_per_second=RATE, burst=BURST
    )
    connections.close_all()  # children open their own connections
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(portal.pk, CALLS, queue)) for _ in range(PROCS)]
    started = time.time()
    for p in procs:
        p.start()
    results = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert all(kind == "ok" for kind, _ in results), results
    sends = sorted(t for _, times in results for t in times)
    assert len(sends) == PROCS * CALLS

    state = BucketState(0.0, started)
    peak = 0.0
    for t in sends:
        admitted, state = admit(state, t, rate=RATE, burst=BURST)
        assert admitted, "the portal would have answered QUERY_LIMIT_EXCEEDED"
        peak = max(peak, state.level)
    assert peak <= BURST
    elapsed = sends[-1] - sends[0]
    print(f"\n{len(sends)} sends in {elapsed:.2f}s, peak bucket {peak:.2f}/{BURST}, "
          f"drain use {(len(sends) - BURST) / max(elapsed * RATE, 1e-9):.0%}")
    assert PortalLimiter.objects.filter(pk=portal.pk).exists()
