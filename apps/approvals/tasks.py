"""Celery adapter: a delivery id in, one attempt, a retry with the service's countdown."""

from celery import shared_task

from . import services


@shared_task(bind=True, max_retries=None, ignore_result=True)
def deliver_callback(self, delivery_id: str):
    retry_in = services.callback_attempt(delivery_id=delivery_id)
    if retry_in is not None:
        raise self.retry(args=(delivery_id,), countdown=retry_in)


@shared_task(bind=True, max_retries=20, ignore_result=True)
def read_preimages(self, plan_id: str):
    from apps.bitrix.errors import NotSent

    from .previews import preview_read

    try:
        preview_read(plan_id=plan_id)
    except NotSent as exc:
        raise self.retry(countdown=max(1.0, exc.retry_after or 5.0)) from None
