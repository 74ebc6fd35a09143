"""Online deliveries across processes (real PostgreSQL, a real broker, a real Celery worker):
four forked processes receive 400 distinct events (and every one of them a second time) through
the hook's service while the worker's processing runs drain the portal. Every event is stored
once and processed exactly once, with no help from stale recovery: a delivery that lands while a
run clears the wake flag or reads is never left behind (the lost wake-up race of `events_wake`).
"""

import multiprocessing
import random
import time

import pytest
from django.db import connections

from apps.events.models import InboundEvent, ProcessingWake
from tests.integration.events.conftest import APP_TOKEN, MEMBER_ID, make_oauth_portal
from tests.services import needs_broker, needs_postgres

from .test_events_offline import start_worker, stop, wait_for

pytestmark = [
    pytest.mark.services,
    needs_postgres,
    needs_broker,
    pytest.mark.django_db(transaction=True),
]
SENDERS, PER_SENDER = 4, 100


def _send(sender: int, results) -> None:
    from apps.events.parsing import form_pairs, parse_delivery, parse_pairs
    from apps.events.services import inbound_receive

    connections.close_all()  # this process's own connection
    pause = random.Random(sender)
    stored = 0
    for n in range(PER_SENDER):
        if n % 10 == 0:  # bursts and pauses: runs often find nothing left and end, so wake-ups are many
            time.sleep(pause.uniform(0, 0.2))
        body = (f"event=ONCRMLEADADD&data[FIELDS][ID]={sender * 1000 + n}&ts=1742807175"
                f"&auth[member_id]={MEMBER_ID}&auth[application_token]={APP_TOKEN}").encode()
        for _ in range(2):  # Bitrix24 delivers some events twice
            delivery = parse_delivery(parse_pairs(form_pairs(body, max_fields=1000)))
            stored += inbound_receive(delivery=delivery).created
    connections.close_all()
    results.put(stored)


def test_concurrent_deliveries_are_each_processed_exactly_once():
    from controlplane.celery import app

    app.control.purge()
    portal = make_oauth_portal("https://some-domain.bitrix24.com", slug="svc-online", offline=False)
    worker = start_worker("--pool=prefork", "--concurrency=2")
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    connections.close_all()  # children open their own connections
    senders = [ctx.Process(target=_send, args=(i, results)) for i in range(SENDERS)]
    try:
        for proc in senders:
            proc.start()
        stored = sum(results.get(timeout=120) for _ in senders)
        for proc in senders:
            proc.join(timeout=30)
            assert proc.exitcode == 0
        total = SENDERS * PER_SENDER
        assert stored == total  # each event stored once, its repeat a duplicate
        wait_for(lambda: InboundEvent.objects.filter(portal=portal, status="processed").count() == total, 90,
                 "some stored events were never processed (a lost wake-up)")
    finally:
        stop(worker)
        app.control.purge()
    events = InboundEvent.objects.filter(portal=portal)
    assert events.count() == total
    assert {(e.status, e.attempts) for e in events} == {("processed", 1)}
    assert len({e.feed_seq for e in events}) == total
    assert ProcessingWake.objects.filter(portal=portal).exists()
