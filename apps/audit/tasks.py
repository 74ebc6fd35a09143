"""Celery adapter: the periodic checkpoint (CELERY_BEAT_SCHEDULE["audit-checkpoint"])."""

from celery import shared_task

from . import services


@shared_task(ignore_result=True)
def audit_checkpoint():
    return len(services.audit_checkpoint())
