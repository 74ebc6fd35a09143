"""Celery adapters: ids in, one service call, the follow-up queued (house rule 5)."""

from celery import shared_task
from django.conf import settings

from . import services


@shared_task(ignore_result=True, time_limit=settings.EXPORT_SLICE_SECONDS + 120,
             soft_time_limit=settings.EXPORT_SLICE_SECONDS + 90)
def run_export(export_id: str, polls: int = 0):
    outcome = services.export_run(export_id=export_id, polls=polls)
    if outcome.again_in is not None:
        services.enqueue_run(export_id, countdown=outcome.again_in or None, polls=outcome.polls)
    return outcome.status


@shared_task(ignore_result=True)
def dispatch_exports():
    return services.exports_dispatch()


@shared_task(ignore_result=True)
def purge_export_files():
    return services.exports_purge_expired()
