import json

import pytest
from django.contrib.auth.models import Permission

from apps.agents.services import agent_create
from apps.policy.services import grant_upsert
from apps.portals.services import portal_upsert

WEBHOOK_CODE = "hook-secret-0123456789"


@pytest.fixture
def portal(db):
    portal, _ = portal_upsert(
        slug="acme", base_url="https://acme.bitrix24.com", auth_mode="webhook",
        secrets={"webhook_code": WEBHOOK_CODE, "application_token": "app-token-secret"},
        fields={"webhook_user_id": "1"},
    )
    return portal


@pytest.fixture
def make_agent(db):
    def make(slug="agent-a", *, portal=None, packs=("core",), owner=None, **policies):
        agent, token = agent_create(slug=slug, owner=owner)
        for pack in packs if portal is not None else ():
            grant_upsert(agent=agent, portal=portal, pack=pack, **policies)
        agent.token = token
        return agent

    return make


@pytest.fixture
def agent(make_agent, portal):
    return make_agent("agent-a", portal=portal)


@pytest.fixture
def make_approver(db, django_user_model):
    def make(username, *, portals=(), staff=True):
        user = django_user_model.objects.create_user(username=username, password="pw-" + username, is_staff=staff)
        user.user_permissions.add(
            *Permission.objects.filter(content_type__app_label="plans", codename__in=["approve_plan", "view_plan"]))
        for p in portals:
            p.approvers.add(user)
        return django_user_model.objects.get(pk=user.pk)  # fresh permission cache

    return make


@pytest.fixture
def approver(make_approver, portal):
    return make_approver("alice", portals=[portal])


@pytest.fixture
def approver2(make_approver, portal):
    return make_approver("bob", portals=[portal])


class Api:
    """The agent's view of the API through Django's test client."""

    def __init__(self, client):
        self.client = client

    def _headers(self, token, headers):
        out = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
        for key, value in (headers or {}).items():
            out["HTTP_" + key.upper().replace("-", "_")] = value
        return out

    def get(self, path, *, token, headers=None, **params):
        return self.client.get(path, params, **self._headers(token, headers))

    def post(self, path, body=None, *, token, headers=None, raw=None, content_type="application/json"):
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        return self.client.generic("POST", path, data, content_type=content_type, **self._headers(token, headers))


@pytest.fixture
def api(client):
    return Api(client)


def error_code(response):
    return response.json()["error"]["code"]


@pytest.fixture
def celery_drain():
    """Run the tasks waiting in the (in-memory, real kombu) broker, as a worker would: the
    message is decoded from its JSON body, so a task that is given a non-JSON argument fails
    here as it would in production. Returns the names of the tasks run."""
    from controlplane.celery import app

    def drain(limit=50):
        ran = []
        with app.connection_for_read() as conn:
            queue = conn.SimpleQueue("celery")
            try:
                for _ in range(limit):
                    try:
                        message = queue.get(block=False)
                    except queue.Empty:
                        break
                    assert message.content_type == "application/json"
                    args, kwargs, _embed = message.decode()
                    name = message.headers["task"]
                    message.ack()
                    app.tasks[name].apply(args=args, kwargs=kwargs)
                    ran.append((name, args, kwargs))
            finally:
                queue.close()
        return ran

    with app.connection_for_write() as conn:  # start empty: what earlier tests queued is dropped, not run
        queue = conn.SimpleQueue("celery")
        queue.clear()
        queue.close()
    return drain


@pytest.fixture
def make_sandbox_portal(live_server):
    """`make_sandbox_portal(slug)`: a sandbox portal served by the live server and a product
    portal pointing at it with a webhook credential (the code is kept as `webhook_code_for_test`)."""
    from apps.portals.services import portal_upsert
    from apps.sandbox.services import sandbox_portal_ensure, sandbox_webhook_create

    def make(slug):
        sandbox = sandbox_portal_ensure(slug=slug)
        user_id, code = sandbox_webhook_create(portal=sandbox)
        portal, _ = portal_upsert(slug=slug, base_url=f"{live_server.url}/sandbox/{slug}", auth_mode="webhook",
                                  secrets={"webhook_code": code}, fields={"webhook_user_id": str(user_id)})
        portal.webhook_code_for_test = code
        return portal

    return make


@pytest.fixture
def thread_starts(monkeypatch):
    """Counts threads started while counting: `with thread_starts.counting(): ...`, then
    `thread_starts.names`."""
    import contextlib
    import threading

    original = threading.Thread.start

    class Starts:
        names: list[str] = []

        @contextlib.contextmanager
        def counting(self):
            def counted(thread):
                self.names.append(thread.name)
                original(thread)

            monkeypatch.setattr(threading.Thread, "start", counted)
            try:
                yield self
            finally:
                monkeypatch.setattr(threading.Thread, "start", original)

    starts = Starts()
    starts.names = []
    return starts
