"""BitrixClient against the sandbox portal over real HTTP (pytest-django live_server)."""

import time
from types import SimpleNamespace

import pytest

from apps.bitrix import limiter
from apps.bitrix.client import BitrixClient
from apps.bitrix.errors import AuthFailed, OutcomeUnknown, PortalError, WaitForReset
from apps.bitrix.models import MethodBlock
from apps.portals.models import AuthMode, Credential, CredentialStatus, OAuthApp, Portal
from apps.sandbox import clock as sandbox_clock
from apps.sandbox.selectors import sandbox_counters, sandbox_records, sandbox_token_endpoint_calls
from apps.sandbox.services import (
    sandbox_expire_tokens,
    sandbox_oauth_client_create,
    sandbox_oauth_issue,
    sandbox_portal_ensure,
    sandbox_set_faults,
    sandbox_set_limits,
    sandbox_webhook_create,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sb(live_server):
    return sandbox_portal_ensure(slug="cli", rate=50.0, burst=500)


@pytest.fixture
def hook_portal(live_server, sb):
    user_id, code = sandbox_webhook_create(portal=sb, code="clicode")
    portal = Portal.objects.create(slug="cli", base_url=f"{live_server.url}/sandbox/cli", rate_per_second=50.0,
                                   burst=500)
    Credential.objects.create(portal=portal, webhook_user_id=user_id, webhook_code=code)
    return portal


@pytest.fixture
def oauth_setup(live_server, sb):
    client_id, secret = sandbox_oauth_client_create()
    pair = sandbox_oauth_issue(portal=sb, client_id=client_id)
    app = OAuthApp.objects.create(name="sandbox app", client_id=client_id, client_secret=secret,
                                  token_url=f"{live_server.url}/sandbox/oauth/token/")
    portal = Portal.objects.create(slug="cli-oauth", base_url=f"{live_server.url}/sandbox/cli",
                                   auth_mode=AuthMode.OAUTH, member_id=sb.member_id, rate_per_second=50.0, burst=500)
    Credential.objects.create(portal=portal, oauth_app=app, access_token=pair["access_token"],
                              refresh_token=pair["refresh_token"])
    return portal, client_id, pair


def test_webhook_calls(hook_portal, sb):
    client = BitrixClient(hook_portal)
    added = client.call("crm.lead.add", {"fields": {"TITLE": "from the client", "PHONE": [{"VALUE": "+1"}]}})
    lead_id = added.result
    got = client.call("crm.lead.get", {"id": lead_id})
    assert got.result["TITLE"] == "from the client"
    listed = client.call("crm.lead.list", {"select": ["ID", "TITLE"]})
    assert listed.total == 1 and listed.result[0]["TITLE"] == "from the client"
    assert "operating" in listed.time
    with pytest.raises(PortalError):
        client.call("crm.lead.get", {"id": 999999})


def test_rest3_calls(hook_portal, sb):
    client = BitrixClient(hook_portal)
    scopes = client.call("rest.scope.list", {})  # 3.0 only: goes to /rest/api/ by itself
    assert scopes.result["items"]
    task = client.call("tasks.task.add", {"fields": {"title": "t", "creatorId": 1, "responsibleId": 1}}, rest3=True)
    assert task.result["item"]["id"] == 1
    assert sandbox_counters(portal=sb)["methods_v3"]["tasks.task.add"] == 1


def test_oauth_call(oauth_setup):
    portal, _, _ = oauth_setup
    assert BitrixClient(portal).call("user.current", {}).result["ID"] == "1"


def test_expired_token_one_refresh_then_success(oauth_setup, sb):
    portal, client_id, pair = oauth_setup
    sandbox_expire_tokens(portal=sb)
    res = BitrixClient(portal).call("user.current", {})
    assert res.result["ID"] == "1"
    assert sandbox_token_endpoint_calls(client_id=client_id) == 1
    cred = Credential.objects.get(portal=portal)
    assert cred.access_token != pair["access_token"]
    assert cred.refresh_token != pair["refresh_token"]  # the rotated refresh token is stored
    assert cred.status == CredentialStatus.OK and cred.access_expires_at is not None
    # and it is the one that works next time
    sandbox_expire_tokens(portal=sb)
    assert BitrixClient(portal).call("user.current", {}).result["ID"] == "1"
    assert sandbox_token_endpoint_calls(client_id=client_id) == 2


def test_invalid_grant_marks_broken(oauth_setup, sb, settings):
    settings.ADMINS = [("Ops", "ops@example.com")]
    portal, client_id, _ = oauth_setup
    Credential.objects.filter(portal=portal).update(refresh_token="")  # placeholder, set below (encrypted)
    cred = Credential.objects.get(portal=portal)
    cred.refresh_token = "not-a-refresh-token-the-server-knows"
    cred.save()
    sandbox_expire_tokens(portal=sb)
    with pytest.raises(AuthFailed) as info:
        BitrixClient(portal).call("user.current", {})
    assert info.value.code == "invalid_grant"
    cred.refresh_from_db()
    assert cred.status == CredentialStatus.BROKEN and "invalid_grant" in cred.status_detail
    calls = sandbox_token_endpoint_calls(client_id=client_id)
    with pytest.raises(AuthFailed):
        BitrixClient(portal).call("user.current", {})
    assert sandbox_token_endpoint_calls(client_id=client_id) == calls  # no further retries


def test_batch_with_result_references_and_errors(hook_portal, sb):
    client = BitrixClient(hook_portal)
    res = client.batch(
        [
            ("lead", "crm.lead.add", {"fields": {"TITLE": "batched & fine"}}),
            ("get", "crm.lead.get", {"id": "$result[lead]"}),
            ("missing", "crm.lead.get", {"id": 424242}),
        ],
        halt=False,
    )
    assert res.results["get"]["TITLE"] == "batched & fine"
    # crm.lead.get answers a missing ID with an empty code and "Not found" (as the docs' sample)
    assert res.errors["missing"]["error_description"] == "Not found"
    assert [r["TITLE"] for r in sandbox_records(portal=sb, entity="lead")] == ["batched & fine"]


def test_run_steps_batch_halts(hook_portal, sb):
    out = BitrixClient(hook_portal).run_steps([
        {"name": "a", "method": "crm.lead.add", "params": {"fields": {"TITLE": "one"}}},
        {"name": "b", "method": "crm.lead.get", "params": {"id": 424242}},
        {"name": "c", "method": "crm.lead.add", "params": {"fields": {"TITLE": "never"}}},
    ])
    steps = out["steps"]
    assert steps["a"]["result"] == 1 and steps["a"]["error"] is None
    assert steps["b"]["error"]["error_description"] == "Not found"
    assert steps["c"] == {"result": None, "error": None, "total": None, "next": None}
    assert [r["TITLE"] for r in sandbox_records(portal=sb, entity="lead")] == ["one"]


class FakeClock:
    """One clock for the limiter and the sandbox portal: it moves only when someone sleeps, so the
    waits are exact whatever the load on the machine."""

    def __init__(self, start):
        self.now = start
        self.slept = []

    def time(self):
        return self.now

    def advance(self, seconds):
        self.now += max(seconds, 0.0)

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.advance(seconds)


def test_limiter_waits_instead_of_hitting_the_limit(hook_portal, sb, monkeypatch):
    # One request per second and room for one (burst 2 less the margin of 1). Time stands still
    # unless the limiter sleeps, so every call after the first must wait exactly one second; without
    # the waits the portal (same clock, burst 2) would refuse from the third call on.
    fake = FakeClock(time.time())
    monkeypatch.setattr(limiter, "time", SimpleNamespace(time=fake.time, sleep=fake.sleep))
    monkeypatch.setattr(sandbox_clock, "now", fake.time)
    monkeypatch.setattr(sandbox_clock, "sleep", fake.advance)  # the portal's own latency: not a wait
    sandbox_set_limits(portal=sb, rate=1.0, burst=2)
    Portal.objects.filter(pk=hook_portal.pk).update(rate_per_second=1.0, burst=2)
    hook_portal.refresh_from_db()
    client = BitrixClient(hook_portal)
    for _ in range(5):
        client.call("server.time", {})
    counters = sandbox_counters(portal=sb)
    assert counters["query_limit_refusals"] == 0
    assert counters["requests_total"] == 5
    assert fake.slept == pytest.approx([1.0, 1.0, 1.0, 1.0])


def test_operation_time_limit_blocks_the_method(hook_portal, sb):
    sandbox_set_limits(portal=sb, operating_limit=1.0, method_costs={"crm.lead.list": 2.0})
    client = BitrixClient(hook_portal)
    first = client.call("crm.lead.list", {})
    assert first.time["operating"] >= 2.0
    with pytest.raises(WaitForReset) as info:
        client.call("crm.lead.list", {})
    assert 500 < info.value.retry_after <= 601
    assert MethodBlock.objects.filter(portal=hook_portal, method="crm.lead.list").exists()
    before = sandbox_counters(portal=sb)
    with pytest.raises(WaitForReset):
        BitrixClient(hook_portal).call("crm.lead.list", {})
    with pytest.raises(WaitForReset):
        BitrixClient(hook_portal).run_steps([{"name": "x", "method": "crm.lead.list", "params": {}},
                                             {"name": "y", "method": "server.time", "params": {}}])
    after = sandbox_counters(portal=sb)
    assert after["requests_total"] == before["requests_total"]  # held locally: nothing was sent
    assert after["operation_limit_refusals"] == 1
    client.call("crm.deal.list", {})  # other methods keep working


def test_faults_map_to_outcome_unknown(hook_portal, sb, settings):
    sandbox_set_faults(portal=sb, fail_5xx=1)
    with pytest.raises(OutcomeUnknown) as info:
        BitrixClient(hook_portal).call("crm.lead.add", {"fields": {"TITLE": "x"}})
    assert info.value.code == "INTERNAL_SERVER_ERROR"
    settings.BITRIX_READ_TIMEOUT = 0.3
    sandbox_set_faults(portal=sb, timeout_seconds=1.0, when="after")
    with pytest.raises(OutcomeUnknown) as info:
        BitrixClient(hook_portal).call("crm.lead.add", {"fields": {"TITLE": "ghost"}})
    assert info.value.code == "READ_TIMEOUT"
    time.sleep(1.0)  # let the server thread finish before the database is flushed
