"""The web process's applications send the agent API, the event hook and the sandbox portal's
REST endpoints through the short middleware stack (`API_MIDDLEWARE`) and every other path
through the full one: same headers and error answers on the API, no session or CSRF machinery
there, and under ASGI no thread hop for middleware hooks."""

import asyncio
import io
import json

import pytest
from asgiref.sync import SyncToAsync

from apps.plans import services

pytestmark = pytest.mark.django_db(transaction=True)


async def asgi_get(app, path, *, host="testserver", token=None):
    head = [(b"host", host.encode())]
    if token:
        head.append((b"authorization", f"Bearer {token}".encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": head,
             "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
    messages = []
    sent_body = False

    async def receive():
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays connected

    async def send(message):
        messages.append(message)

    await app(scope, receive, send)
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    headers = {}
    for k, v in start["headers"]:
        headers.setdefault(k.decode().lower(), []).append(v.decode())
    return start["status"], headers, body


def wsgi_get(app, path, *, host="testserver", token=None):
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "testserver",
               "SERVER_PORT": "80", "HTTP_HOST": host, "wsgi.input": io.BytesIO(b""), "wsgi.url_scheme": "http",
               "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1", "wsgi.errors": io.StringIO()}
    if token:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    out = {}

    def start_response(status, headers, exc_info=None):
        out["status"], out["headers"] = int(status.split()[0]), {}
        for k, v in headers:
            out["headers"].setdefault(k.lower(), []).append(v)

    body = b"".join(app(environ, start_response))
    return out["status"], out["headers"], body


@pytest.fixture(scope="module")
def asgi_app():
    from controlplane.asgi import application

    return application


@pytest.fixture(scope="module")
def wsgi_app():
    from controlplane.wsgi import application

    return application


@pytest.fixture
def final_plan(agent, portal):
    plan = services.plan_submit(agent=agent, portal=portal, steps=[
        {"name": "call", "method": "crm.lead.add", "params": {"fields": {"TITLE": "x"}}}]).plan
    services.plan_cancel(plan_id=plan.pk, agent=agent)
    return plan


def both(asgi_app, wsgi_app, path, **kwargs):
    return [asyncio.run(asgi_get(asgi_app, path, **kwargs)), wsgi_get(wsgi_app, path, **kwargs)]


def test_api_answers_keep_the_security_headers_and_set_no_cookie(asgi_app, wsgi_app, agent, final_plan):
    for status, headers, body in both(asgi_app, wsgi_app, f"/api/v1/plans/{final_plan.pk}", token=agent.token):
        assert status == 200 and json.loads(body)["status"] == "cancelled"
        assert headers["x-content-type-options"] == ["nosniff"]
        assert headers["x-frame-options"] == ["DENY"]
        assert headers["referrer-policy"] and headers["x-request-id"]
        assert "set-cookie" not in headers
        assert "Cookie" not in " ".join(headers.get("vary", []))


def test_api_errors_are_json_on_the_short_stack(asgi_app, wsgi_app, agent):
    for status, headers, body in both(asgi_app, wsgi_app, "/api/v1/plans/not-a-plan", token=agent.token):
        assert status == 404 and headers["content-type"] == ["application/json"]
        assert json.loads(body)["error"]["code"]
    for status, headers, body in both(asgi_app, wsgi_app, "/api/v1/plans", host="bad host!", token=agent.token):
        assert status == 400 and headers["content-type"] == ["application/json"]  # ALLOWED_HOSTS still checked
    for status, headers, body in both(asgi_app, wsgi_app, "/api/v1/nowhere"):
        assert status == 404 and headers["content-type"] == ["application/json"]


def test_pages_keep_the_full_stack(asgi_app, wsgi_app):
    for status, headers, body in both(asgi_app, wsgi_app, "/accounts/login/"):
        assert status == 200
        assert any(c.strip().startswith("csrftoken=") for c in headers.get("set-cookie", []))  # CSRF middleware ran
        assert headers["x-frame-options"] == ["DENY"] and headers["x-content-type-options"] == ["nosniff"]


def test_an_api_read_under_asgi_makes_no_thread_sensitive_hop(asgi_app, agent, final_plan, monkeypatch):
    """Django runs each sync middleware hook and sync view in the request's own thread
    (`sync_to_async(thread_sensitive=True)`); on the API's stack no middleware hook does, and a
    plan read's database work runs in the wait pool (apps.core.aio.run_sync)."""
    hops = []
    original = SyncToAsync.__init__

    def spy(self, func, thread_sensitive=True, executor=None, **kwargs):
        if thread_sensitive and executor is None:
            hops.append(getattr(func, "__qualname__", repr(func)))
        original(self, func, thread_sensitive=thread_sensitive, executor=executor, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__init__", spy)
    status, _, body = asyncio.run(asgi_get(asgi_app, f"/api/v1/plans/{final_plan.pk}", token=agent.token))
    assert status == 200 and json.loads(body)["id"] == str(final_plan.pk)
    api_hops = list(hops)
    hops.clear()
    asyncio.run(asgi_get(asgi_app, "/accounts/login/"))
    assert "SessionMiddleware.process_request" in hops, "the spy sees middleware hops where they happen"
    # what is left is the handler's own: the request_started and request_finished signals
    assert set(api_hops) <= {"Signal.asend.<locals>.sync_send", "HttpResponseBase.close"}, api_hops


def test_api_requests_under_asgi_start_no_thread_each(asgi_app, agent, final_plan, thread_starts):
    """Django's ASGI handler would start a thread per request for its request signals (and a
    second to join it at the end); the API's requests share a few threads instead."""
    async def scenario():
        for _ in range(3):  # warm: the shared threads and the pool start once
            await asgi_get(asgi_app, f"/api/v1/plans/{final_plan.pk}", token=agent.token)
        with thread_starts.counting():
            answers = await asyncio.gather(*[asgi_get(asgi_app, f"/api/v1/plans/{final_plan.pk}", token=agent.token)
                                             for _ in range(30)])
            await asyncio.sleep(0.2)  # any context exit still joining a thread
        return answers

    answers = asyncio.run(scenario())
    assert [status for status, _, _ in answers] == [200] * 30
    assert len(thread_starts.names) <= 8, thread_starts.names  # at most the pools' own threads, started once


@pytest.fixture
def sandbox_hook():
    from apps.sandbox.services import sandbox_portal_ensure, sandbox_webhook_create

    user_id, code = sandbox_webhook_create(portal=sandbox_portal_ensure(slug="stack"))
    return f"/sandbox/stack/rest/{user_id}/{code}"


def test_the_sandbox_portal_answers_on_the_short_stack(asgi_app, wsgi_app, sandbox_hook, thread_starts):
    for status, headers, body in both(asgi_app, wsgi_app, f"{sandbox_hook}/user.current.json"):
        assert status == 200 and json.loads(body)["result"]["ID"] == "1"
        assert headers["x-content-type-options"] == ["nosniff"] and headers["x-request-id"]
        assert "set-cookie" not in headers and "Cookie" not in " ".join(headers.get("vary", []))
    for status, headers, body in both(asgi_app, wsgi_app, f"{sandbox_hook}/no.such.method.json"):
        assert status == 404 and json.loads(body)["error"] == "ERROR_METHOD_NOT_FOUND"  # the portal's own errors

    async def scenario():
        await asgi_get(asgi_app, f"{sandbox_hook}/user.current.json")
        with thread_starts.counting():  # one after the other: the test database is SQLite in memory
            answers = [await asgi_get(asgi_app, f"{sandbox_hook}/user.current.json") for _ in range(10)]
            await asyncio.sleep(0.2)
        return answers

    assert [status for status, _, _ in asyncio.run(scenario())] == [200] * 10
    assert len(thread_starts.names) <= 8, thread_starts.names
