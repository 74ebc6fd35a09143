"""MCP tools that wait (`get_plan` and `submit_plan` with `wait`, `read_events` with `wait`) served by
the real ASGI application: the wait is awaited on the plan's (or the portals') wake-up as the API's
`?wait=` is, so waiting agents hold no thread; each is answered by the transition. No timed
assertion: the tests wait for conditions and check what was answered."""

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.utils import timezone

from apps.core import wakeup
from apps.plans import selectors
from tests.integration.plans import test_long_poll as long_poll
from tests.integration.plans.test_long_poll import asgi_call, cancel, in_thread, submit, until, write_then_release

# the ASGI application, the held wake-ups and the spy on waits, as the API's long-poll tests have them
asgi_app, held_signals, woken = long_poll.asgi_app, long_poll.held_signals, long_poll.woken
_no_fallback = long_poll._no_fallback

pytestmark = pytest.mark.django_db(transaction=True)


def call(app, agent, name, arguments, msg_id=1):
    body = {"jsonrpc": "2.0", "id": msg_id, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
    return asgi_call(app, "POST", "/mcp", token=agent.token, body=body)


def result_of(content) -> dict:
    answer = json.loads(content)
    assert "result" in answer, answer
    return answer["result"]["structuredContent"]


def test_many_waiting_get_plan_calls_hold_no_thread_and_are_answered_by_the_transition(asgi_app, agent, portal,
                                                                                        woken, held_signals):
    plan_ids = in_thread(submit, agent, portal, 10)
    in_thread(lambda: type(agent).objects.filter(pk=agent.pk).update(last_used_at=timezone.now()))
    waits = 60

    async def scenario():
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(4))
        before = threading.active_count()
        requests = [asyncio.ensure_future(call(asgi_app, agent, "get_plan", {"plan_id": str(plan_ids[i % 10]),
                                                                             "wait": 30}, msg_id=i))
                    for i in range(waits)]
        await until(lambda: woken.entered == waits, "every call parked")
        await asyncio.sleep(0.2)  # let executors that were let go finish exiting
        parked_threads = threading.active_count()
        assert not any(r.done() for r in requests)
        await write_then_release(held_signals, cancel, plan_ids, agent)
        return before, parked_threads, await asyncio.gather(*requests)

    before, parked_threads, answers = asyncio.run(asyncio.wait_for(scenario(), 300))
    # a thread per waiting call (the sync endpoint before) would make this ~60 more
    assert parked_threads - before < 20, (before, parked_threads)
    assert [status for status, _, _ in answers] == [200] * waits
    assert [json.loads(content)["id"] for _, _, content in answers] == list(range(waits))
    assert {result_of(content)["status"] for _, _, content in answers} == {"cancelled"}
    assert len(woken) == waits and all(woken)
    assert wakeup.waiting_count() == 0


def test_a_waiting_submit_plan_is_answered_when_its_plan_is_final(asgi_app, agent, portal, woken, held_signals):
    arguments = {"portal": "acme", "method": "crm.lead.add", "params": {"fields": {"TITLE": "x"}}, "wait": 30}

    async def scenario():
        request = asyncio.ensure_future(call(asgi_app, agent, "submit_plan", arguments))
        await until(lambda: woken.entered == 1, "the call parked")
        from apps.plans.models import Plan

        plan_ids = await asyncio.get_running_loop().run_in_executor(
            None, in_thread, lambda: list(Plan.objects.filter(agent=agent).values_list("pk", flat=True)))
        await write_then_release(held_signals, cancel, plan_ids, agent)
        return await request

    status, _, content = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert status == 200 and result_of(content)["status"] == "cancelled"
    assert woken == [True]


def test_a_waiting_read_events_is_woken_by_a_processed_event(asgi_app, agent, portal, woken, held_signals):
    from apps.events.models import InboundEvent
    from apps.events.services import event_process

    def store():
        return InboundEvent.objects.create(portal=portal, event="ONCRMLEADADD", ts=int(time.time()),
                                           data={"FIELDS": {"ID": 7}}, payload_hash="h" * 64).pk

    async def scenario():
        request = asyncio.ensure_future(call(asgi_app, agent, "read_events", {"wait": 30}))
        await until(lambda: woken.entered == 1, "the call parked")
        event_id = await asyncio.get_running_loop().run_in_executor(None, in_thread, store)
        await write_then_release(held_signals, event_process, event_id=event_id)
        return await request

    status, _, content = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert status == 200
    assert [e["event"] for e in result_of(content)["events"]] == ["ONCRMLEADADD"]


def test_a_wait_that_fails_is_answered_as_an_internal_error_not_a_500(asgi_app, agent, portal, monkeypatch):
    (plan_id,) = in_thread(submit, agent, portal, 1)

    async def broken(**kwargs):
        raise RuntimeError("the wake-up transport broke")

    monkeypatch.setattr(selectors, "plan_await_final", broken)
    status, headers, content = asyncio.run(asyncio.wait_for(
        call(asgi_app, agent, "get_plan", {"plan_id": str(plan_id), "wait": 30}, msg_id=7), 60))
    assert status == 200 and headers["content-type"].startswith("application/json")
    answer = json.loads(content)
    assert answer["id"] == 7 and answer["error"]["code"] == -32603
    assert answer["error"]["data"]["code"] == "internal_error"
    assert "broke" not in content.decode()  # no internals in the answer
