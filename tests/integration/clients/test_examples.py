"""Every scenario under examples/ runs against the sandbox portal, through the client, as an agent
would: plans and chains, writes approved by two approvers through the plan service (the scripts
themselves use `manage.py decide_plan`), executed by the worker (drained here)."""

import importlib
import pkgutil

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction

import examples
from apps.plans import services
from apps.plans.models import Plan
from apps.policy.services import grant_upsert
from apps.portals.models import AuthMode, Credential, OAuthApp, Portal
from apps.sandbox import events as sandbox_events
from apps.sandbox.services import (
    sandbox_oauth_client_create,
    sandbox_oauth_issue,
    sandbox_outgoing_webhook_create,
    sandbox_portal_ensure,
)
from apps.sandbox.tokens import application_token
from clients.b24cp import Client
from examples._agent import Agent

pytestmark = pytest.mark.django_db(transaction=True)

SCENARIO_PACKS = ("core", "comms", "services", "collab", "automation", "content", "boards")
SCENARIOS = sorted(m.name for m in pkgutil.iter_modules(examples.__path__) if m.name.startswith("s"))


@pytest.fixture
def portal_deliveries(monkeypatch):
    """The sandbox's event POSTs, held until `send()`: on SQLite (the test database) a delivery
    thread writing while a plan executes would lock the database, so the test sends them between
    plans, in order, as the portal would have."""
    held: list[tuple[str, str]] = []
    monkeypatch.setattr(sandbox_events, "send_after_commit",
                        lambda url, body: transaction.on_commit(lambda: held.append((url, body))))

    def send():
        while held:
            sandbox_events.post_form(*held.pop(0))

    return send


def _app_portal(live_server):
    """`demo-app`: the sandbox portal `demo` connected as an OAuth app (bots need an app context),
    its events arriving at the plane's app endpoint, authenticated by `member_id` and token."""
    sandbox = sandbox_portal_ensure(slug="demo")
    client_id, secret = sandbox_oauth_client_create()
    pair = sandbox_oauth_issue(portal=sandbox, client_id=client_id)
    app = OAuthApp.objects.create(name="demo app", client_id=client_id, client_secret=secret,
                                  token_url=f"{live_server.url}/sandbox/oauth/token/")
    portal = Portal.objects.create(slug="demo-app", base_url=f"{live_server.url}/sandbox/demo",
                                   auth_mode=AuthMode.OAUTH, member_id=sandbox.member_id)
    portal.approvers.add(*get_user_model().objects.filter(username__in=("alice", "bob")))
    Credential.objects.create(portal=portal, oauth_app=app, access_token=pair["access_token"],
                              refresh_token=pair["refresh_token"],
                              application_token=application_token(portal=sandbox, subject=client_id))
    return portal


@pytest.fixture
def agent_for(live_server, sandbox_portal, make_agent, make_approver, celery_drain, portal_deliveries):
    approvers = [make_approver(name, portals=[sandbox_portal]) for name in ("alice", "bob")]

    def approve(plan):
        for user in approvers[: plan["approvals_required"]]:
            services.plan_decide(plan_id=plan["id"], user=user, decision="approve", comment="example")

    def finish(client, plan_id):
        celery_drain()
        return client.get(plan_id)

    app_portal = _app_portal(live_server)

    def build(slug, packs=("core",), **policies):
        agent = make_agent(slug, portal=sandbox_portal, packs=packs, **policies)
        for pack in packs:  # the same packs on the portal as the plane's OAuth app sees it (s23)
            grant_upsert(agent=agent, portal=app_portal, pack=pack, **policies)
        return Agent(Client(live_server.url, agent.token), "demo", approve=approve, finish=finish, wait=0,
                     before_feed=feed_worker)

    def feed_worker():  # the portal sends its events, the plane's worker processes what it received
        portal_deliveries()
        celery_drain()

    # the portal tells the plane of new leads (an outgoing webhook, as `seed_demo` sets up)
    _, app_token = sandbox_outgoing_webhook_create(
        portal=sandbox_portal_ensure(slug="demo"), event="ONCRMLEADADD",
        handler=f"{live_server.url}/hooks/bitrix24/events/{sandbox_portal.slug}")
    credential = Credential.objects.get(portal=sandbox_portal)
    credential.application_token = app_token
    credential.save()

    return build


def check_s01(out, seeded):
    assert out["lead_id"] > 0 and out["source"] == "WEB" and out["has_phone"] == "Y"


def check_s02(out, seeded):
    assert out["phone"] == "+600111333" and out["email"] == "ana.ruiz@example.com"


def check_s03(out, seeded):
    assert out["leads"] == 2 and len(out["tasks"]) == 2


def check_s04(out, seeded):
    assert out["qualified"] and out["deal_id"] > 0


def check_s05(out, seeded):
    assert out["stage"] == "PREPARATION" and out["notified"] > 0 and out["notification_id"] > 0


def check_s06(out, seeded):
    assert out["stuck"] >= 1 and len(out["tasks"]) == out["stuck"]


def check_s07(out, seeded):
    assert out["open_deals"] >= 1 and all(row["id"] > 0 for row in out["without_tasks"])


def check_s08(out, seeded):
    assert out["comments"].endswith("send the quote by Friday.")


def check_s09(out, seeded):
    assert out["event_id"] > 0 and out["attendees"] == ["U1", "U2", "U3"]
    assert out["remind"] == [{"type": "min", "count": 15}, {"type": "day", "count": 1}]


def check_s10(out, seeded):
    assert out["task_id"] > 0 and [i["title"] for i in out["items"]] == [
        "Draft the contract", "Legal review", "Send for signature"]
    assert [i["done"] for i in out["items"]] == [True, False, False] and out["items"][1]["owners"] == ["2"]


def check_s11(out, seeded):
    assert out["chat_id"] > 0 and out["message_id"] > 0


def check_s12(out, seeded):
    assert out["overdue"] >= 1 and len(out["notices"]) == out["overdue"] and all(n > 0 for n in out["notices"])


def check_s13(out, seeded):
    assert out["post_id"] > 0 and out["title"] == "Release 2.4"


def check_s14(out, seeded):
    assert out["group_id"] > 0 and len(out["tasks"]) == 4 and out["in_group"] == 4


def check_s15(out, seeded):
    assert out["deal_id"] > 0 and out["running"] == [out["workflow_id"]]


def check_s16(out, seeded):
    assert out["linked"] and out["deal_id"] > 0 and out["contact_id"] > 0


def check_s17(out, seeded):
    assert out["rows"] >= 1 and out["csv"].startswith("ID,TITLE,STAGE_ID")


def check_s18(out, seeded):
    assert out["updated"] == 3 and out["would_be"] == "pending_approval"


def check_s19(out, seeded):
    methods = out["methods"]
    assert methods["crm.lead.add"] == {"known": True, "risk": "write", "granted": True, "policy": "approve",
                                       "packs": ["core"]}
    assert methods["crm.lead.delete"]["policy"] == "approve2"
    assert methods["vendor.thing.do"]["known"] is False and methods["vendor.thing.do"]["risk"] == "write"
    assert methods["im.message.add"]["granted"] is True and methods["im.message.add"]["packs"] == ["comms"]
    assert out["blocked"] == ["vendor.thing.do"]  # the example agent holds comms too
    assert out["portal_scopes"] == {"refused": "not_granted", "pack": "diagnostics"}


def check_s20(out, seeded):
    assert set(out["created"]) <= set(out["recovered"]) and len(out["created"]) == 3
    assert int(out["resume_at"]) > int(out["saved_cursor"])
    assert {f"Lead while offline {n}" for n in (1, 2, 3)} <= set(out["titles"])


def check_s21(out, seeded):
    assert set(out["created"]) <= set(out["leads"]) and len(out["workflows"]) == len(out["leads"])


def check_s22(out, seeded):
    assert len(out["changed"]) >= 1 and out["messages"] == len(out["changed"])


def check_s23(out, seeded):
    assert out["bot_id"] > 0 and out["command_id"] > 0 and out["params"] == "42" and out["answer_id"] > 0


def check_s24(out, seeded):
    assert out["members"] == [1, 2, 3] and out["added"] == [2, 3] and out["number_of_members"] == 3
    assert out["description"].endswith(": 3 members")


def check_s25(out, seeded):
    assert out["name"] == "acme-quote.txt" and out["size"] == 51 and out["attachment_id"] > 0
    assert out["attached_to"] == ("tasks", out["task_id"])


def check_s26(out, seeded):
    assert out["moved"] == out["tasks"][:2] and out["closed"] == out["tasks"][:2]
    assert list(out["points"].values()) == ["3", "5", "2"]


def test_every_scenario_runs_against_the_sandbox(agent_for):
    seeder = agent_for("seeder", write="auto")
    for title, score, source in (("Big", 6000, "OTHER"), ("Huge", 12000, "OTHER"), ("Small", 100, "OTHER")):
        seeder.call("crm.lead.add", {"fields": {"TITLE": title, "OPPORTUNITY": score, "SOURCE_ID": source}})
    seeder.call("crm.deal.add", {"fields": {"TITLE": "Stuck deal", "STAGE_ID": "NEW"}})
    seeded = len(seeder.plans)

    # the packs the scenarios need (examples/README.md), the default policy: read auto, write approve,
    # destructive approve2
    agent = agent_for("example-agent", packs=SCENARIO_PACKS)
    ran = []
    for name in SCENARIOS:
        module = importlib.import_module(f"examples.{name}")
        assert module.TITLE and module.PACKS and callable(module.run), name
        checker = globals().get(f"check_{name.split('_')[0]}")
        assert checker is not None, f"{name} has no check in this test"
        checker(module.run(agent), seeded)
        ran.append(name)
    assert ran == SCENARIOS and len(ran) >= 11
    plans = Plan.objects.filter(agent__slug="example-agent")
    assert plans.exclude(status="succeeded").count() == 0
    assert plans.filter(approvals_required__gt=0).count() >= 8  # the writes went through approvers
