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


@shared_task(ignore_result=True)
def notify_portal_pending(portal_id: int):
    from .notify import notify_waiting

    notify_waiting(portal_id=portal_id)


@shared_task(ignore_result=True)
def notify_plan_pending(plan_id: str):
    """One plan's notices: what earlier releases queued per plan (messages still in a broker)."""
    from .notify import notify_pending

    notify_pending(plan_id=plan_id)


@shared_task(bind=True, max_retries=None, ignore_result=True)
def flush_bitrix_notices(self, portal_id: int):
    from .notify import flush_bitrix

    wait = flush_bitrix(portal_id=portal_id)
    if wait is not None:
        raise self.retry(args=(portal_id,), countdown=wait)


@shared_task(bind=True, max_retries=None, ignore_result=True)
def flush_email(self, user_id: int):
    from .notify import flush_email as flush

    wait = flush(user_id=user_id)
    if wait is not None:
        raise self.retry(args=(user_id,), countdown=wait)


@shared_task(bind=True, max_retries=50, ignore_result=True)
def send_bitrix_notice(self, notice_id: int):
    """One notice: what earlier releases queued per notice (messages still in a broker)."""
    from .notify import send_bitrix

    wait = send_bitrix(notice_id=notice_id)
    if wait is not None:
        raise self.retry(args=(notice_id,), countdown=wait)


@shared_task(ignore_result=True)
def remind_approvers():
    from .notify import notify_lost, remind_due

    notify_lost()
    return remind_due()
