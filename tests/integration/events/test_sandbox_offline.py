"""The whole offline path against the sandbox portal over real HTTP, as `make run` runs it: bind
offline through the product (event.bind event_type=offline with our auth_connector), change leads
on the portal, drain (event.offline.get clear=0 -> store -> process -> event.offline.clear), and
nothing is left in the portal's queue or lost on our side. Writes made with our own
auth_connector do not come back as events.
"""

import pytest
import requests

from apps.events.bindings import binding_add
from apps.events.models import EventSettings, InboundEvent
from apps.events.offline import offline_drain
from apps.events.services import event_settings_update
from apps.portals.models import AuthMode, Credential, OAuthApp, Portal
from apps.sandbox.models import SandboxOfflineEvent
from apps.sandbox.services import (
    sandbox_application_token,
    sandbox_oauth_client_create,
    sandbox_oauth_issue,
    sandbox_portal_ensure,
    sandbox_reset_limits,
    sandbox_set_limits,
    sandbox_webhook_create,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def offline_sandbox(live_server, settings):
    """A sandbox portal with our OAuth application installed by its administrator (user 1), the
    product portal pointing at it, offline events on; plus a webhook for 'someone else' on the
    portal to change leads with."""
    settings.SANDBOX_BASE_URL = live_server.url
    sandbox = sandbox_portal_ensure(slug="offsb")
    client_id, client_secret = sandbox_oauth_client_create()
    tokens = sandbox_oauth_issue(portal=sandbox, client_id=client_id, user_id=1)
    app = OAuthApp.objects.create(client_id=client_id, client_secret=client_secret, name="sandbox app",
                                  token_url=f"{live_server.url}/sandbox/oauth/token/")
    portal = Portal.objects.create(slug="offsb", base_url=f"{live_server.url}/sandbox/offsb",
                                   auth_mode=AuthMode.OAUTH, member_id=tokens["member_id"])
    Credential.objects.create(portal=portal, oauth_app=app, access_token=tokens["access_token"],
                              refresh_token=tokens["refresh_token"],
                              application_token=sandbox_application_token(portal=sandbox, client_id=client_id))
    event_settings_update(portal=portal, offline_events=True, auth_connector="cp_ours")
    user_id, code = sandbox_webhook_create(portal=sandbox, user_id=3, code="someoneelse0123")
    hook = f"{live_server.url}/sandbox/offsb/rest/{user_id}/{code}"
    return sandbox, portal, hook


def test_offline_events_drain_from_the_sandbox_exactly_once(offline_sandbox):
    sandbox, portal, hook = offline_sandbox
    binding_add(portal=portal, event="ONCRMLEADADD", offline=True)
    binding_add(portal=portal, event="ONCRMLEADUPDATE", offline=True)
    sandbox_set_limits(portal=sandbox, burst=100_000)  # someone else's busy day
    ids = [requests.post(f"{hook}/crm.lead.add.json", json={"fields": {"TITLE": f"Lead {i}"}}, timeout=10)
           .json()["result"] for i in range(120)]
    # one record per object, the last change wins (FACTS §11): updating the first 10 adds no records
    for lead_id in ids[:10]:
        answer = requests.post(f"{hook}/crm.lead.update.json", json={"id": lead_id, "fields": {"TITLE": "again"}},
                               timeout=10)
        assert answer.json()["result"] is True
    assert SandboxOfflineEvent.objects.filter(portal=sandbox).count() == 120
    sandbox_reset_limits(portal=sandbox)  # the drain meets the standard limit
    refusals_before = type(sandbox).objects.get(pk=sandbox.pk).query_limit_refusals

    result = offline_drain(portal_id=portal.pk, max_batches=10)

    assert result.status != "error", result.error
    assert SandboxOfflineEvent.objects.filter(portal=sandbox).count() == 0  # every stored record cleared
    events = InboundEvent.objects.filter(portal=portal)
    assert events.count() == 120
    assert sorted(int(e.data["FIELDS"]["ID"]) for e in events) == sorted(ids)
    assert {e.status for e in events} == {"processed"}
    assert {e.event for e in events.filter(data__FIELDS__ID__in=[str(i) for i in ids[:10]])} <= {
        "ONCRMLEADUPDATE", "ONCRMLEADADD"}
    assert EventSettings.objects.get(portal=portal).process_id == ""  # nothing left reserved
    assert type(sandbox).objects.get(pk=sandbox.pk).query_limit_refusals == refusals_before

    # a second drain finds nothing and stores nothing twice
    offline_drain(portal_id=portal.pk, max_batches=2)
    assert InboundEvent.objects.filter(portal=portal).count() == 120


def test_our_own_writes_do_not_echo_back(offline_sandbox):
    from apps.bitrix.client import BitrixClient

    sandbox, portal, hook = offline_sandbox
    binding_add(portal=portal, event="ONCRMLEADADD", offline=True)
    requests.post(f"{hook}/crm.lead.add.json", json={"fields": {"TITLE": "theirs"}}, timeout=10)
    BitrixClient(portal).call("crm.lead.add", {"fields": {"TITLE": "ours"}, "auth_connector": "cp_ours"})
    assert SandboxOfflineEvent.objects.filter(portal=sandbox).count() == 1

    offline_drain(portal_id=portal.pk, max_batches=2)
    assert [e.event for e in InboundEvent.objects.filter(portal=portal)] == ["ONCRMLEADADD"]


def _run(agent, portal, method, params):
    from apps.plans import executor, services

    plan = services.plan_submit(agent=agent, portal=portal,
                                steps=[{"name": "call", "method": method, "params": params}]).plan
    executor.execute(plan_id=plan.pk)
    plan.refresh_from_db()
    assert plan.status == "succeeded", plan.error
    return plan


def test_an_agents_writes_through_plans_carry_our_auth_connector(offline_sandbox, make_agent, monkeypatch):
    """The executor adds the portal's auth_connector to every write it sends (alone or inside an
    auto-batch), never to a read, and never to what the plan stored or the approvers saw."""
    import apps.bitrix.client as client_module
    from apps.plans import executor, services

    sent = []
    real_send = client_module.http_send

    def spy(http_method, url, *, json_body=None, **kwargs):
        sent.append(json_body or {})
        return real_send(http_method, url, json_body=json_body, **kwargs)

    monkeypatch.setattr(client_module, "http_send", spy)
    sandbox, portal, hook = offline_sandbox
    agent = make_agent("writer", portal=portal, packs=("core",), write="auto")
    binding_add(portal=portal, event="ONCRMLEADADD", offline=True)

    plan = _run(agent, portal, "crm.lead.add", {"fields": {"TITLE": "ours, alone"}})
    assert sent[-1]["auth_connector"] == "cp_ours"
    assert "auth_connector" not in plan.steps[0]["params"]
    _run(agent, portal, "crm.lead.list", {"select": ["ID"]})
    assert "auth_connector" not in sent[-1]

    # two writes queued together go out as one batch: each command carries the connector
    plans = [services.plan_submit(agent=agent, portal=portal, steps=[
        {"name": "call", "method": "crm.lead.add", "params": {"fields": {"TITLE": f"ours {i}"}}}]).plan
        for i in range(2)]
    executor.execute(plan_id=plans[0].pk)
    batch = sent[-1]
    assert set(batch["cmd"]) and all("auth_connector=cp_ours" in c for c in batch["cmd"].values()), batch
    for p in plans:
        p.refresh_from_db()
    assert {p.status for p in plans} == {"succeeded"}

    requests.post(f"{hook}/crm.lead.add.json", json={"fields": {"TITLE": "theirs"}}, timeout=10)
    offline_drain(portal_id=portal.pk, max_batches=2)
    titles = [e.data for e in InboundEvent.objects.filter(portal=portal)]
    assert len(titles) == 1  # only someone else's lead came back; our three did not echo


def test_without_an_auth_connector_nothing_is_added(offline_sandbox, make_agent, monkeypatch):
    import apps.bitrix.client as client_module

    sent = []
    real_send = client_module.http_send
    monkeypatch.setattr(client_module, "http_send", lambda m, u, *, json_body=None, **kw: (
        sent.append(json_body or {}), real_send(m, u, json_body=json_body, **kw))[1])
    sandbox, portal, hook = offline_sandbox
    event_settings_update(portal=portal, auth_connector="")
    agent = make_agent("writer", portal=portal, packs=("core",), write="auto")
    _run(agent, portal, "crm.lead.add", {"fields": {"TITLE": "plain"}})
    assert "auth_connector" not in sent[-1]
