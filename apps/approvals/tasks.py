"""Celery adapter: a delivery id in, one attempt, a retry with the service's countdown."""

from celery import shared_task

from . import services


@shared_task(bind=True, max_retries=None, ignore_result=True)
def deliver_callback(self, delivery_id: str):
    retry_in = services.callback_attempt(delivery_id=delivery_id)
    if retry_in is not None:
        raise self.retry(args=(delivery_id,), countdown=retry_in)
