"""Celery adapters: ids in, one service call, nothing secret in the message (house rule 5)."""

from celery import shared_task

from . import executor, idempotency, services


@shared_task(bind=True, max_retries=None, ignore_result=True)
def execute_plan(self, plan_id: str, attempt: int | None = None):
    outcome = executor.execute(plan_id=plan_id, attempt=attempt)
    if outcome.retry_in is not None:
        raise self.retry(args=(plan_id,), kwargs={"attempt": outcome.attempt}, countdown=outcome.retry_in)
    return outcome.status


@shared_task(ignore_result=True)
def expire_plans():
    idempotency.purge_expired()
    executor.recover_stale()
    return services.plans_expire_due()
