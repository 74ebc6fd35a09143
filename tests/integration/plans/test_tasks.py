"""The Celery adapters: each periodic job is its own task in the beat schedule, and the execute
task's time limit is the one source of the stale-worker threshold."""

import datetime

import pytest
from django.conf import settings
from django.utils import timezone

from apps.plans import services, tasks
from apps.plans.models import IdempotencyRecord, Plan
from controlplane.celery import app

pytestmark = pytest.mark.django_db
WRITE = [{"name": "call", "method": "crm.lead.add", "params": {"fields": {"TITLE": "x"}}}]


def test_every_periodic_job_is_its_own_scheduled_task():
    tasks = [entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()]
    scheduled = set(tasks)
    assert len(tasks) == len(scheduled), "each periodic job is scheduled once"
    assert {t for t in scheduled if t.startswith("apps.plans.")} == {
        "apps.plans.tasks.expire_plans", "apps.plans.tasks.purge_idempotency_keys",
        "apps.plans.tasks.recover_stale_plans"}
    app.loader.import_default_modules()
    assert scheduled <= set(app.tasks)


def _old_key_and_due_plan(agent, portal):
    plan = services.plan_submit(agent=agent, portal=portal, steps=WRITE).plan
    Plan.objects.filter(pk=plan.pk).update(expires_at=timezone.now() - datetime.timedelta(seconds=1))
    IdempotencyRecord.objects.create(agent=agent, key="old", request_hash="h")
    IdempotencyRecord.objects.update(
        created_at=timezone.now() - datetime.timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL + 1))
    return plan


def test_expire_plans_only_expires(agent, portal):
    plan = _old_key_and_due_plan(agent, portal)
    assert tasks.expire_plans() == 1
    assert Plan.objects.get(pk=plan.pk).status == "expired"
    assert IdempotencyRecord.objects.filter(key="old").exists()


def test_purge_idempotency_keys_only_purges(agent, portal):
    plan = _old_key_and_due_plan(agent, portal)
    assert tasks.purge_idempotency_keys() == 1
    assert not IdempotencyRecord.objects.filter(key="old").exists()
    assert Plan.objects.get(pk=plan.pk).status == "pending_approval"


def test_execute_plan_has_explicit_time_limits_from_the_setting():
    assert tasks.execute_plan.time_limit == settings.PLAN_EXECUTION_TIME_LIMIT
    assert 0 < tasks.execute_plan.soft_time_limit < tasks.execute_plan.time_limit


def test_the_stale_threshold_follows_the_task_time_limit(monkeypatch):
    assert services.stale_after() > datetime.timedelta(seconds=tasks.execute_plan.time_limit)
    monkeypatch.setattr(tasks.execute_plan, "time_limit", 1000)
    longer = services.stale_after()
    monkeypatch.setattr(tasks.execute_plan, "time_limit", 100)
    assert longer - services.stale_after() == datetime.timedelta(seconds=900)
