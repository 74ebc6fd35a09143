"""Celery adapters: ids in, one service call, nothing secret in the message (house rule 5).

Execution is queued only through `services.enqueue_execution`; each periodic job is its own task,
scheduled in `CELERY_BEAT_SCHEDULE`.
"""

from celery import shared_task
from django.conf import settings

from . import executor, idempotency, services


@shared_task(ignore_result=True, time_limit=settings.PLAN_EXECUTION_TIME_LIMIT,
             soft_time_limit=settings.PLAN_EXECUTION_TIME_LIMIT * 4 // 5)
def execute_plan(plan_id: str, attempt: int | None = None):
    outcome = executor.execute(plan_id=plan_id, attempt=attempt)
    if outcome.retry_in is not None:
        services.enqueue_execution(plan_id, attempt=outcome.attempt, countdown=outcome.retry_in)
    for other_id, attempt, retry_in in outcome.companions:  # plans this run sent in its batch
        services.enqueue_execution(other_id, attempt=attempt, countdown=retry_in)
    return outcome.status


@shared_task(ignore_result=True)
def expire_plans():
    return services.plans_expire_due()


@shared_task(ignore_result=True)
def purge_idempotency_keys():
    return idempotency.purge_expired()


@shared_task(ignore_result=True)
def recover_stale_plans():
    return services.plans_recover_stale()
