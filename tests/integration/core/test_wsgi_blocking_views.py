"""Under gunicorn's sync workers (`controlplane.wsgi`) the long-poll views run their `blocking`
twin (`apps.core.aio.long_poll`): a request that does not wait enters no event loop (Django would
otherwise run the async view through `async_to_sync`: a new loop in a new thread and two thread
hops per request), and a `?wait=` request still waits on the plan's wake-up and answers when it
is woken. No timed assertion: the test waits for conditions."""

import io
import json
import threading
import time

import pytest
from asgiref.sync import AsyncToSync

from apps.core import wakeup
from apps.plans import selectors, services

pytestmark = pytest.mark.django_db(transaction=True)
WRITE = [{"name": "call", "method": "crm.lead.add", "params": {"fields": {"TITLE": "x"}}}]


@pytest.fixture(scope="module")
def wsgi_app():
    from controlplane.wsgi import application

    return application


def wsgi_call(app, method, path, *, token, query="", body=None):
    raw = json.dumps(body).encode() if body is not None else b""
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "SERVER_NAME": "testserver",
               "SERVER_PORT": "80", "HTTP_HOST": "testserver", "wsgi.input": io.BytesIO(raw),
               "CONTENT_LENGTH": str(len(raw)), "CONTENT_TYPE": "application/json", "wsgi.url_scheme": "http",
               "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "wsgi.errors": io.StringIO(),
               "HTTP_AUTHORIZATION": f"Bearer {token}"}
    out = {}

    def start_response(status, headers, exc_info=None):
        out["status"] = int(status.split()[0])

    body = b"".join(app(environ, start_response))
    return out["status"], json.loads(body)


@pytest.fixture
def event_loops(monkeypatch):
    """The functions `async_to_sync` was asked to run, in order."""
    entered = []
    original = AsyncToSync.__init__

    def spy(self, awaitable, *args, **kwargs):
        target = getattr(awaitable, "func", awaitable)  # a functools.partial: the function it calls
        entered.append(getattr(target, "__qualname__", repr(target)))
        original(self, awaitable, *args, **kwargs)

    monkeypatch.setattr(AsyncToSync, "__init__", spy)
    return entered


def test_submit_poll_and_list_enter_no_event_loop(wsgi_app, agent, event_loops):
    status, plan = wsgi_call(wsgi_app, "POST", "/api/v1/plans", token=agent.token,
                             body={"portal": "acme", "method": "crm.lead.add", "params": {"fields": {"TITLE": "x"}}})
    assert status == 201 and plan["status"] == "pending_approval"
    status, polled = wsgi_call(wsgi_app, "GET", f"/api/v1/plans/{plan['id']}", token=agent.token)
    assert status == 200 and polled["id"] == plan["id"]
    status, listed = wsgi_call(wsgi_app, "GET", "/api/v1/plans", token=agent.token)
    assert status == 200 and [p["id"] for p in listed["plans"]] == [plan["id"]]
    status, error = wsgi_call(wsgi_app, "GET", "/api/v1/plans/not-a-plan", token=agent.token)
    assert status == 404 and error["error"]["code"]
    assert event_loops == []


def test_a_wait_under_wsgi_is_woken_by_the_transition(wsgi_app, agent, portal, event_loops, monkeypatch, settings):
    settings.WAKEUP_FALLBACK_SECONDS = 3600  # only the transition's signal can wake it within the test
    held, original_notify = [], wakeup.notify
    monkeypatch.setattr(wakeup, "notify", lambda *keys: held.append(keys))  # released after the write commits
    plan = services.plan_submit(agent=agent, portal=portal, steps=WRITE).plan
    # the wait subscribes, then checks the status once: cancel only after that read (SQLite's
    # in-memory test database refuses a read while another thread writes)
    checked, status_now = threading.Event(), selectors._status_now
    monkeypatch.setattr(selectors, "_status_now", lambda plan_id: (status_now(plan_id), checked.set())[0])
    answers = []
    poller = threading.Thread(target=lambda: answers.append(
        wsgi_call(wsgi_app, "GET", f"/api/v1/plans/{plan.pk}", token=agent.token, query="wait=30")))
    poller.start()
    while not (checked.is_set() and wakeup.waiting_count()) and poller.is_alive():
        time.sleep(0.01)
    services.plan_cancel(plan_id=plan.pk, agent=agent)
    assert held, "the cancel sent no wake-up"
    for keys in held:
        original_notify(*keys)
    poller.join(timeout=60)
    assert not poller.is_alive()
    status, answer = answers[0]
    assert status == 200 and answer["status"] == "cancelled"
    assert event_loops == ["plan_await_final"]  # entered for the wait only
