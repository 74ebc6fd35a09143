"""Celery adapters: ids in, one service call, nothing secret in the message (house rule 5)."""

from celery import shared_task

from .choices import EventStatus


@shared_task(bind=True, max_retries=None, ignore_result=True)
def process_event(self, event_id: int):
    from .services import event_process, max_attempts

    status = event_process(event_id=event_id)
    if status == EventStatus.FAILED:
        # Attempts are counted in the row; the K-th failure makes a dead letter, no more retries.
        retries = min(self.request.retries + 1, max_attempts())
        raise self.retry(countdown=min(300, 5 * 2 ** retries))
    return status


@shared_task(bind=True, max_retries=None, ignore_result=True)
def deliver_event(self, subscription_id: int, event_id: int):
    from .subscriptions import CALLBACK_TRIES, deliver

    outcome = deliver(subscription_id=subscription_id, event_id=event_id)
    if outcome == "failed" and self.request.retries + 1 < CALLBACK_TRIES:
        raise self.retry(countdown=min(600, 10 * 3 ** self.request.retries))
    return outcome


@shared_task(ignore_result=True)
def drain_offline_queue(portal_id: int):
    from .offline import offline_drain

    return offline_drain(portal_id=portal_id).status


@shared_task(ignore_result=True)
def schedule_offline_drains():
    """Beat: one drain per active portal with offline events on; re-enqueue stale online events;
    purge processed events past their retention."""
    from .models import EventSettings
    from .services import events_purge_old, events_recover_stale

    ids = list(EventSettings.objects.filter(offline_events=True, portal__is_active=True)
               .values_list("portal_id", flat=True))
    for portal_id in ids:
        drain_offline_queue.delay(portal_id)
    events_recover_stale()
    events_purge_old()
    return len(ids)


@shared_task(ignore_result=True)
def process_portal_events(portal_id: int):
    """One processing run of a portal's stored online events (queued by `events_wake`)."""
    from .services import events_process_pending

    return events_process_pending(portal_id=portal_id)
