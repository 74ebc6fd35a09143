import json
from pathlib import Path

import pytest

from apps.sandbox import clock
from apps.sandbox.params import php_build_query
from apps.sandbox.services import sandbox_portal_ensure, sandbox_set_limits, sandbox_webhook_create

SAMPLES = Path(__file__).parent / "samples"
START = 1_800_000_000.0


def sample(name: str) -> dict:
    return json.loads((SAMPLES / f"{name}.json").read_text())


class FakeClock:
    """Replaces apps.sandbox.clock: time moves only when a test (or a fake sleep) moves it."""

    def __init__(self, start: float = START):
        self.t = start
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.slept.append(seconds)
            self.t += seconds

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def sb_clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(clock, "now", fake.now)
    monkeypatch.setattr(clock, "sleep", fake.sleep)
    return fake


@pytest.fixture
def sb_portal(db, sb_clock):
    return sandbox_portal_ensure(slug="acme")


class Rest:
    """Calls the sandbox through Django's test client like a Bitrix24 client would."""

    def __init__(self, client, portal, user_id: str, code: str):
        self.client = client
        self.portal = portal
        self.user_id = user_id
        self.code = code

    @property
    def base(self) -> str:
        return f"/sandbox/{self.portal.slug}"

    def url(self, method: str, *, api: bool = False) -> str:
        segment = "rest/api" if api else "rest"
        return f"{self.base}/{segment}/{self.user_id}/{self.code}/{method}"

    def call(self, method: str, params: dict | None = None):
        """JSON POST, as recommended for v2."""
        return self.client.post(self.url(method), data=json.dumps(params or {}), content_type="application/json")

    def form(self, method: str, params: dict):
        return self.client.post(self.url(method), data=php_build_query(params),
                                content_type="application/x-www-form-urlencoded")

    def get(self, method: str, params: dict | None = None):
        query = php_build_query(params or {})
        return self.client.get(self.url(method) + (f"?{query}" if query else ""))

    def v3(self, method: str, body=None, *, raw: str | None = None):
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        return self.client.post(self.url(method, api=True), data=data, content_type="application/json")


@pytest.fixture
def rest(client, sb_portal):
    # Functional tests get a roomy bucket; test_limits.py checks the real defaults.
    sandbox_set_limits(portal=sb_portal, burst=100_000)
    user_id, code = sandbox_webhook_create(portal=sb_portal, user_id=1, code="hookcode0123")
    return Rest(client, sb_portal, user_id, code)


@pytest.fixture
def make_leads(rest):
    def make(n: int, **fields) -> list[int]:
        ids = []
        for i in range(n):
            answer = rest.call("crm.lead.add", {"fields": {"TITLE": f"Lead {i + 1}", **fields}})
            assert answer.status_code == 200, answer.content
            ids.append(answer.json()["result"])
        return ids

    return make


class AppRest:
    """Calls the sandbox as an OAuth application (auth in the JSON body), for user `user_id`."""

    def __init__(self, client, portal, client_id: str, token: str):
        self.client = client
        self.portal = portal
        self.client_id = client_id
        self.token = token

    def call(self, method: str, params: dict | None = None):
        return self.client.post(f"/sandbox/{self.portal.slug}/rest/{method}",
                                data=json.dumps({**(params or {}), "auth": self.token}),
                                content_type="application/json")


@pytest.fixture
def make_app(client, rest):
    from apps.sandbox.services import sandbox_oauth_client_create, sandbox_oauth_issue

    def make(*, user_id: int = 1, scopes: list[str] | None = None, client_id: str | None = None) -> AppRest:
        if client_id is None:
            client_id, _ = sandbox_oauth_client_create(scopes=scopes)
        token = sandbox_oauth_issue(portal=rest.portal, client_id=client_id, user_id=user_id)["access_token"]
        return AppRest(client, rest.portal, client_id, token)

    return make
