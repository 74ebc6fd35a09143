"""`?wait=` long polls served by the real ASGI application (`controlplane.asgi`), called with
ASGI messages in one event loop as uvicorn would: a waiting request is answered when its plan
reaches a final state, woken by the transition's signal (the fallback re-read is set to an hour
here, so nothing else can answer it), and waiting requests hold no thread. No timed assertion:
the tests wait for conditions (so many waiters parked) and check what was answered."""

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import close_old_connections, transaction
from django.utils import timezone

from apps.core import wakeup
from apps.plans import services
from apps.plans.models import Plan

pytestmark = pytest.mark.django_db(transaction=True)
WRITE = {"portal": "acme", "method": "crm.lead.add", "params": {"fields": {"TITLE": "x"}}}


@pytest.fixture(autouse=True)
def _no_fallback(settings):
    settings.WAKEUP_FALLBACK_SECONDS = 3600  # only a signal can wake a waiter within a test


@pytest.fixture(scope="module")
def asgi_app():
    from controlplane.asgi import application

    return application


async def asgi_call(app, method, path, *, token=None, query="", body=None, headers=()):
    raw = json.dumps(body).encode() if body is not None else b""
    head = [(b"host", b"testserver")] + [(k.lower().encode(), v.encode()) for k, v in headers]
    if token:
        head.append((b"authorization", f"Bearer {token}".encode()))
    if body is not None:
        head += [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
             "root_path": "", "headers": head, "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
    sent_body = False

    async def receive():
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects

    messages = []

    async def send(message):
        messages.append(message)

    await app(scope, receive, send)
    start = next(m for m in messages if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]}, content


def in_thread(fn, *args, **kwargs):
    """Run ORM code in a worker thread of its own (as a Celery worker would), then close its connection."""
    def run():
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


async def until(condition, what):
    """Wait for a condition (no bound on time is asserted: the test's timeout is the guard)."""
    while not condition():
        await asyncio.sleep(0.01)


def cancel(plan_ids, agent):
    """One commit for all (see `held_signals`)."""
    with transaction.atomic():
        for plan_id in plan_ids:
            services.plan_cancel(plan_id=plan_id, agent=agent)


def submit(agent, portal, n):
    return [services.plan_submit(agent=agent, portal=portal, steps=[{"name": "call", **{k: WRITE[k] for k in (
        "method", "params")}}]).plan.pk for _ in range(n)]


@pytest.fixture(autouse=True)
def held_signals(monkeypatch):
    """The transitions' wake-ups, held until `release()`: the writing thread finishes all of its
    work (on-commit callbacks included) before a woken reader touches the suite's in-memory
    SQLite, which answers "table is locked" instead of waiting. What is released is exactly
    what the code under test sent."""
    held = []
    original = wakeup.notify
    monkeypatch.setattr(wakeup, "notify", lambda *keys: held.append(keys))

    class Held(list):
        def release(self):
            while held:
                original(*held.pop(0))

    result = Held()
    result.sent = held
    return result


async def write_then_release(held_signals, fn, *args, **kwargs):
    await asyncio.get_running_loop().run_in_executor(None, lambda: in_thread(fn, *args, **kwargs))
    assert held_signals.sent, "the write sent no wake-up"
    held_signals.release()


@pytest.fixture
def woken(monkeypatch):
    """How each Subscription.wait ended: True when a signal woke it."""
    class Ends(list):
        entered = 0  # waits begun: the request has done its reads and is parked

    ends = Ends()
    original = wakeup.Subscription.wait

    async def spy(self, timeout):
        ends.entered += 1
        notified = await original(self, timeout)
        ends.append(notified)
        return notified

    monkeypatch.setattr(wakeup.Subscription, "wait", spy)
    return ends


def test_a_waiting_get_is_answered_by_the_transition_signal(asgi_app, agent, portal, woken, held_signals):
    (plan_id,) = in_thread(submit, agent, portal, 1)

    async def scenario():
        request = asyncio.ensure_future(asgi_call(asgi_app, "GET", f"/api/v1/plans/{plan_id}", token=agent.token,
                                                  query="wait=30"))
        await until(lambda: woken.entered == 1, "the request parked")
        assert not request.done()
        await write_then_release(held_signals, cancel, [plan_id], agent)
        return await request

    status, _, content = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert status == 200 and json.loads(content)["status"] == "cancelled"
    assert woken == [True]  # one wait, ended by the signal (not the hour-long fallback, not the deadline)
    assert wakeup.waiting_count() == 0


def test_a_waiting_get_reads_only_the_status_before_it_waits_and_the_plan_once(asgi_app, agent, portal, woken,
                                                                              held_signals, monkeypatch):
    """A wait cycle read the whole plan (with its portal, preview and approvals) before it waited
    and again after: 500 held waits cost a fifth of a core in those reads. Now the view reads
    its status only, and the plan is read whole once, when the wait ends."""
    from apps.plans import selectors

    whole, real = [], selectors.plans_for_agent
    monkeypatch.setattr(selectors, "plans_for_agent", lambda a: whole.append(a) or real(a))
    (plan_id,) = in_thread(submit, agent, portal, 1)

    async def scenario():
        request = asyncio.ensure_future(asgi_call(asgi_app, "GET", f"/api/v1/plans/{plan_id}", token=agent.token,
                                                  query="wait=30"))
        await until(lambda: woken.entered == 1, "the request parked")
        assert whole == []
        await write_then_release(held_signals, cancel, [plan_id], agent)
        return await request

    status, _, content = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert status == 200 and json.loads(content)["status"] == "cancelled"
    assert len(whole) == 1


def test_a_wait_on_another_agents_plan_is_not_found(asgi_app, agent, make_agent, portal):
    (plan_id,) = in_thread(submit, make_agent("other-agent", portal=portal), portal, 1)
    status, _, content = asyncio.run(asgi_call(asgi_app, "GET", f"/api/v1/plans/{plan_id}", token=agent.token,
                                               query="wait=30"))
    assert status == 404 and json.loads(content)["error"]["code"] == "not_found"


def test_a_waiting_submit_of_a_new_plan_parks_without_reading_it_back(asgi_app, agent, portal, woken, held_signals,
                                                                      monkeypatch):
    """The plan was just created: the view hands it to the wait as it is (the wait reads it once it
    has subscribed), and the answer is still the creation's: 201 with its Location."""
    from apps.plans import api

    read_back, real = [], api.plans_for_agent
    monkeypatch.setattr(api, "plans_for_agent", lambda a: read_back.append(a) or real(a))

    async def scenario():
        request = asyncio.ensure_future(asgi_call(asgi_app, "POST", "/api/v1/plans", token=agent.token, body=WRITE,
                                                  query="wait=30"))
        await until(lambda: woken.entered == 1, "the submit parked")
        (plan_id,) = in_thread(lambda: list(Plan.objects.values_list("pk", flat=True)))
        await write_then_release(held_signals, cancel, [plan_id], agent)
        return plan_id, await request

    plan_id, (status, headers, content) = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert status == 201 and headers["location"] == f"/api/v1/plans/{plan_id}"
    assert json.loads(content)["status"] == "cancelled" and woken == [True]
    assert read_back == []


def test_lost_signals_are_caught_by_one_sweep_for_all_of_a_loops_waits(asgi_app, agent, portal, woken, held_signals,
                                                                       settings, monkeypatch):
    """The safety net for a lost wake-up is one query per period for every plan the event loop's
    waits are on (`_FinalSweep`), not a re-read per waiter: pending plans cost their waiters
    nothing, and a plan that became final with its signal lost is answered by the next sweep."""
    from apps.plans import selectors

    settings.WAKEUP_FALLBACK_SECONDS = 0.2
    sweeps, reloads, gate = [], [], threading.Lock()  # gate: the suite's in-memory SQLite takes one writer
    real_final, real_reload = selectors._final_among, selectors._plan_reload

    def final_among(plan_ids):
        with gate:
            sweeps.append(sorted(plan_ids))
            return real_final(plan_ids)

    monkeypatch.setattr(selectors, "_final_among", final_among)
    monkeypatch.setattr(selectors, "_plan_reload",
                        lambda a, plan_id: reloads.append(plan_id) or real_reload(a, plan_id))
    plan_ids = in_thread(submit, agent, portal, 5)

    def cancel_quietly():
        with gate:
            in_thread(cancel, plan_ids, agent)  # its signals are held: never released, lost

    async def scenario():
        requests = [asyncio.ensure_future(asgi_call(asgi_app, "GET", f"/api/v1/plans/{plan_id}", token=agent.token,
                                                    query="wait=30")) for plan_id in plan_ids]
        await until(lambda: woken.entered == 5, "the requests parked")
        await until(lambda: len(sweeps) >= 3, "three sweeps of the pending plans")
        assert not any(request.done() for request in requests)
        assert reloads == []  # after subscribing each checked the status only: the view had just read the plan
        await asyncio.get_running_loop().run_in_executor(None, cancel_quietly)
        return await asyncio.gather(*requests)

    answers = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert [(status, json.loads(content)["status"]) for status, _, content in answers] == [(200, "cancelled")] * 5
    assert held_signals.sent  # the transitions did signal; the signals were lost
    assert sweeps[0] == sorted(str(plan_id) for plan_id in plan_ids)  # one query for all five
    assert sorted(reloads) == sorted(plan_ids)  # each read again once: when the sweep woke it


def test_a_waiting_submit_replay_is_answered_with_the_replay_header(asgi_app, agent, portal, woken, held_signals):
    body = {**WRITE, "idempotency_key": "long-poll-1"}

    async def scenario():
        first = await asgi_call(asgi_app, "POST", "/api/v1/plans", token=agent.token, body=body)
        plan_id = json.loads(first[2])["id"]
        replay = asyncio.ensure_future(asgi_call(asgi_app, "POST", "/api/v1/plans", token=agent.token, body=body,
                                                 query="wait=30"))
        await until(lambda: woken.entered == 1, "the replay parked")
        await write_then_release(held_signals, cancel, [plan_id], agent)
        return first, await replay

    first, (status, headers, content) = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert first[0] == 201 and json.loads(first[2])["status"] == "pending_approval"
    assert status == 200 and headers["idempotent-replayed"] == "true"
    assert json.loads(content)["status"] == "cancelled" and woken == [True]
    assert Plan.objects.count() == 1


def test_many_waits_hold_no_thread_and_all_are_answered(asgi_app, agent, portal, woken, held_signals):
    """200 waiting requests on 40 plans, the loop's default executor limited to 4 threads: while
    they are parked the process has about as many threads as before; each is answered once its
    plan is cancelled."""
    plan_ids = in_thread(submit, agent, portal, 40)
    # seen just now, so 200 first requests at once don't all record it: the suite's in-memory
    # SQLite answers "table is locked" to a read of a table another connection is writing
    in_thread(lambda: type(agent).objects.filter(pk=agent.pk).update(last_used_at=timezone.now()))
    waits = 200

    async def scenario():
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(4))
        before = threading.active_count()
        requests = [asyncio.ensure_future(asgi_call(asgi_app, "GET", f"/api/v1/plans/{plan_ids[i % 40]}",
                                                    token=agent.token, query="wait=30")) for i in range(waits)]
        await until(lambda: woken.entered == waits, "every request parked")
        await asyncio.sleep(0.2)  # let executors that were let go finish exiting
        parked_threads = threading.active_count()
        assert not any(r.done() for r in requests)
        await write_then_release(held_signals, cancel, plan_ids, agent)
        return before, parked_threads, await asyncio.gather(*requests)

    before, parked_threads, answers = asyncio.run(asyncio.wait_for(scenario(), 300))
    # a thread per waiting request would make this ~200 more; the receiver thread and the pools remain
    assert parked_threads - before < 20, (before, parked_threads)
    assert [status for status, _, _ in answers] == [200] * waits
    assert {json.loads(content)["status"] for _, _, content in answers} == {"cancelled"}
    assert {json.loads(content)["id"] for _, _, content in answers} == {str(p) for p in plan_ids}
    assert len(woken) == waits and all(woken)
    assert wakeup.waiting_count() == 0


def test_answering_many_parked_waits_starts_no_thread_per_request(asgi_app, agent, portal, woken, held_signals,
                                                                 thread_starts):
    """When parked waits are answered, what each request still runs in its own context (Django's
    `response.close()`) goes to one shared thread: no executor thread per request, and no thread
    to join one when the request's context exits."""
    plan_ids = in_thread(submit, agent, portal, 10)
    in_thread(lambda: type(agent).objects.filter(pk=agent.pk).update(last_used_at=timezone.now()))
    waits = 60

    async def scenario():
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(4))
        requests = [asyncio.ensure_future(asgi_call(asgi_app, "GET", f"/api/v1/plans/{plan_ids[i % 10]}",
                                                    token=agent.token, query="wait=30")) for i in range(waits)]
        await until(lambda: woken.entered == waits, "every request parked")
        await asyncio.sleep(0.2)  # let executors that were let go finish exiting
        with thread_starts.counting():
            await write_then_release(held_signals, cancel, plan_ids, agent)
            answers = await asyncio.gather(*requests)
            await asyncio.sleep(0.2)  # any context exits still joining
        return answers

    answers = asyncio.run(asyncio.wait_for(scenario(), 300))
    assert [status for status, _, _ in answers] == [200] * waits
    assert {json.loads(content)["status"] for _, _, content in answers} == {"cancelled"}
    # the writer's thread, the pools' threads (at most API_WAIT_DB_SLOTS) and the shared one at most
    assert len(thread_starts.names) < 15, thread_starts.names


def test_the_event_feed_wait_is_woken_by_a_processed_event(asgi_app, agent, portal, woken, held_signals):
    from apps.events.models import InboundEvent
    from apps.events.services import event_process

    def store():
        return InboundEvent.objects.create(portal=portal, event="ONCRMLEADADD", ts=int(time.time()),
                                           data={"FIELDS": {"ID": 7}}, payload_hash="h" * 64).pk

    async def scenario():
        request = asyncio.ensure_future(asgi_call(asgi_app, "GET", "/api/v1/events", token=agent.token,
                                                  query="wait=30"))
        await until(lambda: woken.entered == 1, "the feed request parked")
        event_id = await asyncio.get_running_loop().run_in_executor(None, in_thread, store)
        await write_then_release(held_signals, event_process, event_id=event_id)
        return await request

    status, _, content = asyncio.run(asyncio.wait_for(scenario(), 120))
    answer = json.loads(content)
    assert status == 200 and [e["event"] for e in answer["events"]] == ["ONCRMLEADADD"]
    assert woken and woken[-1] is True


@pytest.mark.parametrize("path,query", [
    ("/api/v1/plans/00000000-0000-0000-0000-000000000000", "wait=abc"),
    ("/api/v1/plans/00000000-0000-0000-0000-000000000000", "wait=31"),
    ("/api/v1/plans/00000000-0000-0000-0000-000000000000", "wait=-1"),
    ("/api/v1/events", "wait=1.5"),
    ("/api/v1/events", "wait=%00"),
])
def test_bad_wait_values_answer_json_errors_over_asgi(asgi_app, agent, path, query):
    status, headers, content = asyncio.run(asgi_call(asgi_app, "GET", path, token=agent.token, query=query))
    assert status == 400 and headers["content-type"] == "application/json"
    error = json.loads(content)["error"]
    assert error["code"] == "invalid_request" and error["field"] == "wait"


def test_bad_submits_answer_json_errors_over_asgi(asgi_app, agent):
    status, headers, content = asyncio.run(asgi_call(asgi_app, "POST", "/api/v1/plans", token=agent.token,
                                                     body=WRITE, query="wait=x"))
    assert status == 400 and json.loads(content)["error"]["field"] == "wait"
    status, headers, content = asyncio.run(asgi_call(asgi_app, "POST", "/api/v1/plans", token="nope",
                                                     body=WRITE, query="wait=5"))
    assert status == 401 and json.loads(content)["error"]["code"] == "unauthenticated"
    status, headers, content = asyncio.run(asgi_call(asgi_app, "PUT", "/api/v1/plans", token=agent.token))
    assert status == 405 and headers["allow"] == "GET, POST" and "x-request-id" in headers
    assert Plan.objects.count() == 0


@pytest.fixture
def deadlines(monkeypatch):
    """The seconds each wait asked `wakeup.wait_deadline` for; every wait then ends in 50 ms."""
    asked = []

    def soon(seconds):
        asked.append(seconds)
        return time.monotonic() + 0.05

    monkeypatch.setattr(wakeup, "wait_deadline", soon)
    return asked


def test_plan_and_feed_waits_take_their_deadline_from_wait_deadline(asgi_app, agent, portal, deadlines):
    """Their end is scattered over the last tenth (`apps.core.wakeup.wait_deadline`), so waits begun
    together do not come back together."""
    (plan_id,) = in_thread(submit, agent, portal, 1)

    async def scenario():
        return (await asgi_call(asgi_app, "GET", f"/api/v1/plans/{plan_id}", token=agent.token, query="wait=30"),
                await asgi_call(asgi_app, "GET", "/api/v1/events", token=agent.token, query="wait=20"))

    (plan_status, _, plan_body), (feed_status, _, feed_body) = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert plan_status == 200 and json.loads(plan_body)["status"] == "pending_approval"
    assert feed_status == 200 and json.loads(feed_body)["events"] == []
    assert deadlines == [30, 20]
