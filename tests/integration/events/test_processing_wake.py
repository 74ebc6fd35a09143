"""Processing of online events: a delivery wakes its portal's processing run (one queued run per
portal, not one task per event), the run processes every stored event in order, and no delivery
is ever left behind, whichever way it interleaves with a run clearing the wake flag."""

import datetime as dt
from urllib.parse import urlencode

import pytest
from django.utils import timezone

from apps.events import handlers, services
from apps.events.models import InboundEvent, ProcessingWake
from apps.events.services import WAKE_TTL_SECONDS, events_process_pending, events_wake
from apps.events.tasks import process_portal_events

from .conftest import make_oauth_portal, sample

pytestmark = pytest.mark.django_db

FORM = "application/x-www-form-urlencoded"
RUN = "apps.events.tasks.process_portal_events"


@pytest.fixture
def portal(db):
    return make_oauth_portal("https://some-domain.bitrix24.com", slug="acme", offline=False)


@pytest.fixture
def deliver(client, django_capture_on_commit_callbacks):
    """Post lead number `n` as Bitrix24 would and commit (on-commit callbacks run)."""
    def post(n):
        fields = {**dict(sample("event_oncrmleadadd")["form_fields"]), "data[FIELDS][ID]": str(n)}
        with django_capture_on_commit_callbacks(execute=True):
            response = client.generic("POST", "/hooks/bitrix24/events", urlencode(fields), content_type=FORM)
        assert response.status_code == 200, response.content
        return InboundEvent.objects.get(data__FIELDS__ID=str(n))

    return post


def drop_queued():
    """Throw away what is queued (the test starts the run itself, as a worker would)."""
    from controlplane.celery import app

    with app.connection_for_write() as conn:
        queue = conn.SimpleQueue("celery")
        queue.clear()
        queue.close()


def flag(portal):
    return ProcessingWake.objects.get(portal=portal).requested_at


def test_many_deliveries_queue_one_run_which_processes_them_in_order(portal, deliver, celery_drain):
    events = [deliver(n) for n in (1, 2, 3)]
    ran = celery_drain()
    assert [(name, args) for name, args, _ in ran] == [(RUN, [portal.pk])]
    for event in events:
        event.refresh_from_db()
    assert [e.status for e in events] == ["processed"] * 3
    assert events[0].feed_seq < events[1].feed_seq < events[2].feed_seq
    assert flag(portal) is None  # the run cleared it
    fourth = deliver(4)  # the next delivery queues a new run
    assert [(name, args) for name, args, _ in celery_drain()] == [(RUN, [portal.pk])]
    fourth.refresh_from_db()
    assert fourth.status == "processed"
    assert celery_drain() == []


def test_a_delivery_woken_before_the_run_clears_the_flag_is_processed_by_that_run(portal, deliver, celery_drain):
    first = deliver(1)
    queued = flag(portal)
    second = deliver(2)  # the run is queued, not started: no second run, the flag stays as it was
    assert flag(portal) == queued
    assert events_process_pending(portal_id=portal.pk) == 2  # the queued run, started now
    for event in (first, second):
        event.refresh_from_db()
        assert event.status == "processed"
    assert [name for name, *_ in celery_drain()] == [RUN]  # the one queued run: finds nothing left
    assert events_process_pending(portal_id=portal.pk) == 0


def test_a_delivery_stored_while_a_run_works_is_never_left_behind(portal, deliver, celery_drain, monkeypatch):
    """After a run cleared the flag, a delivery queues another run; whichever run reaches the event
    first processes it, the other finds it done."""
    first = deliver(1)
    drop_queued()
    real_process = services.event_process
    later = []

    def process_and_receive_another(*, event_id):
        if not later:
            later.append(deliver(2))  # arrives after the run cleared the flag and read its batch
        return real_process(event_id=event_id)

    monkeypatch.setattr(services, "event_process", process_and_receive_another)
    events_process_pending(portal_id=portal.pk)
    monkeypatch.undo()
    assert flag(portal) is not None  # the late delivery found the flag clear and queued a run
    assert [name for name, *_ in celery_drain()] == [RUN]
    for event in (first, later[0]):
        event.refresh_from_db()
        assert (event.status, event.attempts) == ("processed", 1)


def test_a_stale_flag_is_taken_for_a_lost_run(portal):
    now = timezone.now()
    assert events_wake(portal_id=portal.pk, now=now) is True
    assert events_wake(portal_id=portal.pk, now=now + dt.timedelta(seconds=WAKE_TTL_SECONDS - 1)) is False
    assert events_wake(portal_id=portal.pk, now=now + dt.timedelta(seconds=WAKE_TTL_SECONDS + 1)) is True


def test_a_failing_event_is_retried_on_its_own_and_holds_nothing_up(portal, deliver, celery_drain, monkeypatch):
    first, second = deliver(1), deliver(2)
    drop_queued()
    monkeypatch.setitem(handlers.HANDLERS, "ONCRMLEADADD",
                        lambda ev: (_ for _ in ()).throw(RuntimeError("down")) if ev.pk == first.pk else None)
    assert events_process_pending(portal_id=portal.pk) == 2
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.attempts, second.status) == ("failed", 1, "processed")
    monkeypatch.setitem(handlers.HANDLERS, "ONCRMLEADADD", lambda ev: None)
    assert events_process_pending(portal_id=portal.pk) == 0  # a run does not take failed events
    ran = celery_drain()  # the retry of the failed one, as a worker would run it (after its countdown)
    assert [(name, args) for name, args, _ in ran] == [("apps.events.tasks.process_event", [first.pk])]
    first.refresh_from_db()
    assert (first.status, first.attempts) == ("processed", 2)


def test_a_run_hands_over_when_its_budget_is_spent(portal, deliver, celery_drain, django_capture_on_commit_callbacks):
    events = [deliver(n) for n in (1, 2, 3)]
    drop_queued()
    with django_capture_on_commit_callbacks(execute=True):
        assert events_process_pending(portal_id=portal.pk, limit=2) == 2
    assert [(name, args) for name, args, _ in celery_drain()] == [(RUN, [portal.pk])]  # the next run did the rest
    assert {e.status for e in InboundEvent.objects.filter(pk__in=[e.pk for e in events])} == {"processed"}


def test_a_broker_that_refuses_the_run_still_stores_and_leaves_the_flag_clear(portal, deliver, monkeypatch):
    def refuse(*args, **kwargs):
        raise ConnectionError("broker down")

    monkeypatch.setattr(process_portal_events, "delay_on_commit", refuse)
    event = deliver(1)  # 200 stored: the row is durable, recovery re-queues it
    assert event.status == "received" and flag(portal) is None
    monkeypatch.undo()
    assert events_wake(portal_id=portal.pk) is True  # the next delivery wakes it at once


def test_a_run_clears_the_flag_before_it_reads_anything(portal, deliver):
    """The order that makes a lost wake-up impossible: a delivery that lands after the run's last
    read finds the flag already clear and queues the next run."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    deliver(1)
    with CaptureQueriesContext(connection) as queries:
        assert events_process_pending(portal_id=portal.pk) == 1
    statements = [q["sql"] for q in queries.captured_queries]
    clear = next(i for i, sql in enumerate(statements) if sql.startswith('UPDATE "events_processingwake"'))
    first_read = next(i for i, sql in enumerate(statements) if 'FROM "events_inboundevent"' in sql)
    assert clear < first_read
    assert flag(portal) is None
