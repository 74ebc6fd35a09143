"""Bitrix24 notices go out as a digest per portal: one `im.notify.system.add` per person for what
queued meanwhile, up to 50 people in one `batch` request (one slot of a 2 requests/s portal),
instead of a task and a request per plan and person. Against a stub portal (tests/integration/
bitrix/stub.py) that answers `batch` as Bitrix24 does."""

import datetime
from urllib.parse import parse_qs

import pytest
from django.conf import settings
from django.utils import timezone

from apps.approvals import notify, tasks
from apps.approvals.models import ApproverBitrixUser, Notice
from apps.plans.services import plan_cancel, plan_submit
from apps.policy.services import grant_upsert
from apps.portals.models import AuthMode, Credential, Portal
from tests.integration.bitrix.stub import StubServer

UPDATE = [{"name": "call", "method": "crm.lead.update", "params": {"id": 42, "fields": {"TITLE": "paid"}}}]


class BatchPortal(StubServer):
    """Answers a `batch` for each of its commands: an id, or for people in `refuse` the error."""

    def __init__(self):
        super().__init__()
        self.refuse: dict[int, tuple[str, str]] = {}
        self.respond = self._answer

    def _answer(self, seen):
        results, errors = {}, {}
        for name, command in (seen.json or {}).get("cmd", {}).items():
            user = int(self.params_of(command)["USER_ID"])
            if user in self.refuse:
                code, words = self.refuse[user]
                errors[name] = {"error": code, "error_description": words}
            else:
                results[name] = 1000 + user
        return 200, {"result": {"result": results, "result_error": errors, "result_total": [], "result_next": [],
                                "result_time": {}}, "time": {}}, {}

    @staticmethod
    def params_of(command: str) -> dict:
        return {k: v[0] for k, v in parse_qs(command.split("?", 1)[1]).items()}

    def batches(self) -> list[dict]:
        """Each batch request's commands: name -> (method, params)."""
        return [{name: (cmd.split("?", 1)[0], self.params_of(cmd)) for name, cmd in r.json["cmd"].items()}
                for r in self.requests if r.path.rsplit("/", 1)[-1] in ("batch", "batch.json")]


@pytest.fixture
def stub():
    server = BatchPortal().start()
    yield server
    server.stop()


@pytest.fixture
def hook(db, stub, agent):
    portal = Portal.objects.create(slug="stubhook", base_url=f"{stub.url}/p", auth_mode=AuthMode.WEBHOOK)
    Credential.objects.create(portal=portal, webhook_user_id="1", webhook_code="s3cr3twebhookcode")
    grant_upsert(agent=agent, portal=portal, pack="core")
    return portal


@pytest.fixture
def people(make_approver, hook):
    alice, bob = (make_approver(name, portals=[hook]) for name in ("alice", "bob"))
    ApproverBitrixUser.objects.create(user=alice, portal=hook, bitrix_user_id=17)
    ApproverBitrixUser.objects.create(user=bob, portal=hook, bitrix_user_id=18)
    return alice, bob


@pytest.fixture
def queued_flushes(monkeypatch):
    """Portal ids whose Bitrix24 digest was queued (the task's `delay`, replaced)."""
    queued = []
    monkeypatch.setattr(tasks.flush_bitrix_notices, "delay", lambda portal_id: queued.append(portal_id))
    monkeypatch.setattr(tasks.read_preimages, "delay", lambda *a: None)
    monkeypatch.setattr(tasks.notify_portal_pending, "apply_async", lambda *a, **kw: None)
    return queued


def waiting_plans(agent, portal, count):
    plans = [plan_submit(agent=agent, portal=portal, steps=UPDATE).plan for _ in range(count)]
    notify.notify_waiting(portal_id=portal.pk)
    return plans


def test_one_request_tells_everyone_of_everything_that_queued(agent, hook, people, stub, queued_flushes,
                                                              django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        plans = waiting_plans(agent, hook, 3)
    assert queued_flushes == [hook.pk]  # one digest for the portal, not a task per notice
    assert Notice.objects.filter(channel="bitrix", status="queued").count() == 6

    assert notify.flush_bitrix(portal_id=hook.pk) is None
    (batch,) = stub.batches()  # one request: one slot of the portal's limiter
    assert len(stub.requests) == 1
    assert sorted((method, params["USER_ID"]) for method, params in batch.values()) == [
        ("im.notify.system.add", "17"), ("im.notify.system.add", "18")]
    message = next(params["MESSAGE"] for _m, params in batch.values() if params["USER_ID"] == "17")
    assert message.startswith("3 plans on stubhook wait for your decision:")
    assert all(str(plan.pk) in message for plan in plans)
    assert set(Notice.objects.filter(channel="bitrix").values_list("status", flat=True)) == {"sent"}
    assert notify.flush_bitrix(portal_id=hook.pk) is None  # nothing left: no request
    assert len(stub.requests) == 1


def test_a_single_plan_reads_as_before_and_a_long_digest_is_cut(agent, hook, people, stub, queued_flushes):
    (plan,) = waiting_plans(agent, hook, 1)
    notify.flush_bitrix(portal_id=hook.pk)
    message = stub.batches()[0][f"u{people[0].pk}"][1]["MESSAGE"]
    assert message.startswith("Plan ") and "waits for your decision" in message and str(plan.pk) in message

    waiting_plans(agent, hook, notify.BITRIX_DIGEST_LINES + 3)
    notify.flush_bitrix(portal_id=hook.pk)
    message = stub.batches()[1][f"u{people[0].pk}"][1]["MESSAGE"]
    assert message.count("[URL=") == notify.BITRIX_DIGEST_LINES + 1  # the shown plans and the inbox
    inbox = settings.SITE_URL.rstrip("/") + "/approvals/"
    assert message.endswith(f"\n... and 3 more: [URL={inbox}]your inbox[/URL]")


def test_a_refused_command_fails_only_its_persons_notices(agent, hook, people, stub, queued_flushes):
    alice, bob = people
    waiting_plans(agent, hook, 2)
    stub.refuse[17] = ("ERROR_CORE", "user not found")
    notify.flush_bitrix(portal_id=hook.pk)
    mine = dict(Notice.objects.filter(channel="bitrix", user=alice).values_list("status", "error").distinct())
    assert mine == {"failed": "user not found"}
    assert set(Notice.objects.filter(channel="bitrix", user=bob).values_list("status", flat=True)) == {"sent"}


def test_a_command_the_portal_defers_is_queued_again_and_the_digest_retries(agent, hook, people, stub,
                                                                              queued_flushes):
    alice, _bob = people
    waiting_plans(agent, hook, 1)
    stub.refuse[17] = ("QUERY_LIMIT_EXCEEDED", "Too many requests")
    assert notify.flush_bitrix(portal_id=hook.pk) == 5.0  # the task retries then
    assert Notice.objects.get(channel="bitrix", user=alice).status == "queued"
    assert not notify._BITRIX_WAKE.request(hook.pk)  # kept set: it is still the portal's one digest
    del stub.refuse[17]
    assert notify.flush_bitrix(portal_id=hook.pk) is None
    assert Notice.objects.get(channel="bitrix", user=alice).status == "sent"


def test_a_deferred_request_sends_nothing_and_keeps_everything_queued(agent, hook, people, stub, queued_flushes):
    waiting_plans(agent, hook, 2)
    stub.respond = lambda seen: (503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many"}, {})
    wait = notify.flush_bitrix(portal_id=hook.pk)
    assert wait is not None and wait >= 1.0
    assert set(Notice.objects.filter(channel="bitrix").values_list("status", "sent_at")) == {("queued", None)}


def test_notices_of_plans_decided_meanwhile_are_not_sent(agent, hook, people, stub, queued_flushes):
    (plan,) = waiting_plans(agent, hook, 1)
    plan_cancel(plan_id=plan.pk, agent=agent)
    notify.flush_bitrix(portal_id=hook.pk)
    assert stub.requests == []
    assert set(Notice.objects.filter(channel="bitrix").values_list("status", "error")) == {
        ("sent", "decided before sending")}


def test_a_person_without_a_bitrix_user_any_more_fails_without_a_request(agent, hook, people, stub, queued_flushes):
    waiting_plans(agent, hook, 1)
    ApproverBitrixUser.objects.filter(portal=hook).delete()
    notify.flush_bitrix(portal_id=hook.pk)
    assert stub.requests == []
    assert set(Notice.objects.filter(channel="bitrix").values_list("status", "error")) == {
        ("failed", "no Bitrix24 user id any more")}


def test_more_than_fifty_people_take_a_request_per_fifty(agent, hook, make_approver, stub, queued_flushes):
    for i in range(notify.MAX_BATCH + 2):
        user = make_approver(f"approver{i}", portals=[hook])
        ApproverBitrixUser.objects.create(user=user, portal=hook, bitrix_user_id=100 + i)
    waiting_plans(agent, hook, 1)
    notify.flush_bitrix(portal_id=hook.pk)
    assert [len(batch) for batch in stub.batches()] == [notify.MAX_BATCH, 2]
    assert set(Notice.objects.filter(channel="bitrix").values_list("status", flat=True)) == {"sent"}


def test_the_beat_requeues_notices_left_sending_and_flushes_lost_digests(agent, hook, people, queued_flushes):
    waiting_plans(agent, hook, 1)
    now = timezone.now()
    late = now + datetime.timedelta(seconds=notify.BITRIX_WAKE_TTL_SECONDS + 1)
    assert notify._BITRIX_WAKE.request(hook.pk)  # a digest queued, then lost
    notify.notify_lost(now=late)
    assert queued_flushes == [hook.pk]  # the flag had gone stale: queued again

    stuck = Notice.objects.filter(channel="bitrix").first()
    Notice.objects.filter(pk=stuck.pk).update(status="sending", sent_at=now)
    notify.notify_lost(now=now + datetime.timedelta(seconds=notify.BITRIX_WAKE_TTL_SECONDS))
    assert Notice.objects.get(pk=stuck.pk).status == "sending"  # its digest may still be sending
    notify.notify_lost(now=now + datetime.timedelta(seconds=2 * notify.BITRIX_WAKE_TTL_SECONDS + 1))
    assert Notice.objects.get(pk=stuck.pk).status == "queued"
