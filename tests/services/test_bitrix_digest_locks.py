"""A Bitrix24 digest's claim on PostgreSQL (SQLite ignores `select_for_update`): it locks only the
notices it takes, so a decision holding the plan's row does not hold the approvers' messages
back, and it passes over notices another digest is taking instead of waiting for them."""

import threading

import pytest
from django.db import connections

from apps.approvals import notify, tasks
from apps.approvals.models import ApproverBitrixUser, Notice
from apps.plans.models import Plan
from apps.plans.services import plan_submit
from apps.policy.services import grant_upsert
from apps.portals.models import AuthMode, Credential, Portal
from tests.integration.approvals.test_notify_bitrix import UPDATE, BatchPortal
from tests.services import held, needs_postgres

pytestmark = [
    pytest.mark.services,
    needs_postgres,
    pytest.mark.django_db(transaction=True),
]


def flush_in_a_thread(portal_id):
    result = {}
    runner = threading.Thread(target=lambda: result.update(wait=notify.flush_bitrix(portal_id=portal_id))
                              or connections.close_all())
    runner.start()
    runner.join(20)
    assert not runner.is_alive(), "the digest waited for a row another transaction holds"
    return result


def test_a_digest_is_not_held_back_by_the_plan_nor_waits_for_another_digests_notices(agent, make_approver,
                                                                                    monkeypatch):
    monkeypatch.setattr(tasks.flush_bitrix_notices, "delay", lambda *a: None)
    monkeypatch.setattr(tasks.notify_portal_pending, "apply_async", lambda *a, **kw: None)
    monkeypatch.setattr(tasks.read_preimages, "delay", lambda *a: None)
    stub = BatchPortal().start()
    try:
        portal = Portal.objects.create(slug="stubhook", base_url=f"{stub.url}/p", auth_mode=AuthMode.WEBHOOK)
        Credential.objects.create(portal=portal, webhook_user_id="1", webhook_code="s3cr3twebhookcode")
        grant_upsert(agent=agent, portal=portal, pack="core")
        alice = make_approver("alice", portals=[portal])
        ApproverBitrixUser.objects.create(user=alice, portal=portal, bitrix_user_id=17)
        plan = plan_submit(agent=agent, portal=portal, steps=UPDATE).plan
        notify.notify_waiting(portal_id=portal.pk)
        with held(Plan.objects.filter(pk=plan.pk)):  # a decision being made on it
            assert flush_in_a_thread(portal.pk) == {"wait": None}
        assert len(stub.batches()) == 1
        assert Notice.objects.get(channel="bitrix", plan=plan).status == "sent"

        second = plan_submit(agent=agent, portal=portal, steps=UPDATE).plan
        notify.notify_waiting(portal_id=portal.pk)
        with held(Notice.objects.filter(channel="bitrix", plan=second)):  # another digest taking it
            assert flush_in_a_thread(portal.pk) == {"wait": None}
            assert len(stub.batches()) == 1  # passed over, nothing sent twice
        assert notify.flush_bitrix(portal_id=portal.pk) is None  # the next digest sends it
        assert len(stub.batches()) == 2
        assert Notice.objects.get(channel="bitrix", plan=second).status == "sent"
    finally:
        stub.stop()
