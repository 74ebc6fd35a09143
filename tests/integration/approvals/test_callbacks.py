"""Signed callbacks to agents on every final state, and the address checks that keep them from
reaching the plane's own network."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from apps.agents.services import agent_rotate_callback_secret
from apps.approvals import callbacks
from apps.approvals.models import CallbackDelivery, DeliveryStatus
from apps.approvals.services import callback_attempt
from apps.audit.models import AuditEntry
from apps.plans.services import plan_decide, plan_submit

LEAD_ADD = [{"name": "call", "method": "crm.lead.add", "params": {"fields": {"TITLE": "x"}}}]


class Receiver:
    """A local agent endpoint: records what it got, answers what it is told."""

    def __init__(self, status=200, delay=0.0, location=None):
        self.status, self.delay, self.location = status, delay, location
        self.received = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.received.append((dict(self.headers), body, self.path))
                time.sleep(receiver.delay)
                self.send_response(receiver.status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/plan?x=1"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(**kwargs):
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.fixture
def allow_loopback(settings):
    settings.CALLBACK_ALLOW_HOSTS = ["127.0.0.1"]
    return settings


def rejected_plan(agent, portal, approver, url, django_capture_on_commit_callbacks):
    plan = plan_submit(agent=agent, portal=portal, steps=LEAD_ADD, reason="r", callback_url=url).plan
    with django_capture_on_commit_callbacks() as queued:
        plan_decide(plan_id=plan.pk, user=approver, decision="reject", comment="Not this customer")
    return plan, queued


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/x", "http://localhost:8000/x", "http://10.0.0.7/x", "http://192.168.1.1/x",
    "http://172.16.5.4/x", "http://169.254.169.254/latest/meta-data/", "http://[::1]/x", "http://[fd00::1]/x",
    "http://[::ffff:127.0.0.1]/x", "http://100.64.0.1/x", "http://0.0.0.0/x", "http://224.0.0.1/x",
    "ftp://93.184.216.34/x", "http:///nohost", "http://user:pw@93.184.216.34/x", "http://[zz/x",
])
def test_non_public_or_odd_destinations_are_refused(url):
    with pytest.raises(callbacks.DestinationRefused) as refused:
        callbacks.check_destination(url)
    assert refused.value.extra["field"] == "callback_url"


def test_a_public_address_is_accepted_and_pinned():
    destination = callbacks.check_destination("https://93.184.216.34:8443/cb?a=1")
    assert (destination.address, destination.port, destination.path) == ("93.184.216.34", 8443, "/cb?a=1")


def test_allow_list_admits_a_named_loopback_host(allow_loopback):
    assert callbacks.check_destination("http://127.0.0.1:9/x").address == "127.0.0.1"


def test_submission_refuses_a_private_callback_and_stores_nothing(agent, portal):
    from apps.core.exceptions import InvalidRequest
    from apps.plans.models import Plan

    with pytest.raises(InvalidRequest) as refused:
        plan_submit(agent=agent, portal=portal, steps=LEAD_ADD, callback_url="http://10.1.2.3/hook").plan
    assert refused.value.extra["field"] == "callback_url"
    assert not Plan.objects.exists()


def test_submission_over_http_answers_400_naming_the_field(client, agent, portal):
    answer = client.post("/api/v1/plans", data=json.dumps({
        "portal": portal.slug, "method": "crm.lead.add", "params": {"fields": {"TITLE": "x"}},
        "callback_url": "http://169.254.169.254/latest"}), content_type="application/json",
        headers={"Authorization": f"Bearer {agent.token}"})
    assert answer.status_code == 400
    assert answer.json()["error"]["field"] == "callback_url"


def test_rejection_is_delivered_signed_with_the_reason(db, agent, portal, approver, receiver, allow_loopback,
                                                       django_capture_on_commit_callbacks):
    endpoint = receiver()
    secret = agent_rotate_callback_secret(agent=agent)
    plan, queued = rejected_plan(agent, portal, approver, endpoint.url, django_capture_on_commit_callbacks)
    delivery = CallbackDelivery.objects.get(plan=plan)
    assert delivery.plan_status == "rejected"
    # the delivery task, queued on commit (beside the wake-up of requests waiting on the plan)
    assert len([c for c in queued if "deliver_callback" in repr(c)]) == 1
    assert callback_attempt(delivery_id=delivery.pk) is None
    headers, body, path = endpoint.received[0]
    assert path == "/hooks/plan?x=1"
    assert callbacks.verify(secret, body, headers[callbacks.SIGNATURE_HEADER])
    assert not callbacks.verify(secret, body + b" ", headers[callbacks.SIGNATURE_HEADER])
    assert not callbacks.verify("whsec_other", body, headers[callbacks.SIGNATURE_HEADER])
    payload = json.loads(body)
    assert payload["plan"]["status"] == "rejected"
    assert payload["plan"]["approvals"][0]["comment"] == "Not this customer"
    assert headers[callbacks.DELIVERY_HEADER] == str(delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_http_status) == (DeliveryStatus.DELIVERED, 1, 200)
    assert AuditEntry.objects.filter(action="plan.callback", plan_id=plan.pk).count() == 1
    assert callback_attempt(delivery_id=delivery.pk) is None  # a redelivered task sends nothing more
    assert len(endpoint.received) == 1


def test_the_task_queued_on_commit_is_the_delivery_for_that_plan(db, agent, portal, approver, allow_loopback,
                                                                 monkeypatch, django_capture_on_commit_callbacks):
    from apps.approvals import tasks

    sent = []
    monkeypatch.setattr(tasks.deliver_callback, "delay", lambda *args: sent.append(args))
    plan, queued = rejected_plan(agent, portal, approver, "http://127.0.0.1:9/x", django_capture_on_commit_callbacks)
    for callback in queued:
        callback()
    assert sent == [(str(CallbackDelivery.objects.get(plan=plan).pk),)]


def test_a_signature_outside_the_replay_window_is_refused():
    body = b'{"a":1}'
    old = callbacks.sign("s", body, timestamp=int(time.time()) - 301)
    assert not callbacks.verify("s", body, old)
    assert callbacks.verify("s", body, callbacks.sign("s", body))
    assert not callbacks.verify("s", body, "garbage")


def test_redirects_are_not_followed_and_failures_retry_with_backoff(db, agent, portal, approver, receiver,
                                                                    allow_loopback, django_capture_on_commit_callbacks):
    target = receiver()
    endpoint = receiver(status=302, location=target.url)
    plan, _ = rejected_plan(agent, portal, approver, endpoint.url, django_capture_on_commit_callbacks)
    delivery = CallbackDelivery.objects.get(plan=plan)
    assert callback_attempt(delivery_id=delivery.pk) == 5.0
    assert target.received == []
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_http_status, delivery.last_error) == (DeliveryStatus.PENDING, 302,
                                                                                 "HTTP 302")


def test_gives_up_after_the_last_try(db, agent, portal, approver, receiver, allow_loopback, settings,
                                     django_capture_on_commit_callbacks):
    settings.CALLBACK_MAX_ATTEMPTS = 2
    endpoint = receiver(status=500)
    plan, _ = rejected_plan(agent, portal, approver, endpoint.url, django_capture_on_commit_callbacks)
    delivery = CallbackDelivery.objects.get(plan=plan)
    assert callback_attempt(delivery_id=delivery.pk) is not None
    assert callback_attempt(delivery_id=delivery.pk) is None
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 2)
    assert AuditEntry.objects.filter(action="plan.callback_failed", plan_id=plan.pk).count() == 1


def test_checked_again_at_delivery(db, agent, portal, approver, receiver, allow_loopback,
                                   django_capture_on_commit_callbacks):
    endpoint = receiver()
    plan, _ = rejected_plan(agent, portal, approver, endpoint.url, django_capture_on_commit_callbacks)
    allow_loopback.CALLBACK_ALLOW_HOSTS = []
    delivery = CallbackDelivery.objects.get(plan=plan)
    assert callback_attempt(delivery_id=delivery.pk) is None
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.REFUSED
    assert endpoint.received == []


def test_a_slow_receiver_is_cut_at_the_timeout(db, agent, portal, approver, receiver, allow_loopback, settings,
                                               django_capture_on_commit_callbacks):
    settings.CALLBACK_TIMEOUT = 0.3
    endpoint = receiver(delay=2.0)
    plan, _ = rejected_plan(agent, portal, approver, endpoint.url, django_capture_on_commit_callbacks)
    delivery = CallbackDelivery.objects.get(plan=plan)
    assert callback_attempt(delivery_id=delivery.pk) is not None
    delivery.refresh_from_db()
    assert "Timeout" in delivery.last_error or "timed out" in delivery.last_error


def test_plans_without_a_callback_schedule_nothing(db, agent, portal, approver, django_capture_on_commit_callbacks):
    plan = plan_submit(agent=agent, portal=portal, steps=LEAD_ADD).plan
    plan_decide(plan_id=plan.pk, user=approver, decision="reject")
    assert not CallbackDelivery.objects.exists()
