"""The b24cp client and CLI against a live plane: every exit code, and --json output."""

import json

import pytest

from apps.plans import services
from clients.b24cp import ApiError, Client
from clients.b24cp.cli import main

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cli(live_server, plane_agent, capsys):
    """Run the CLI in-process with the agent's client; returns (exit code, parsed --json output)."""

    def run(*argv, token=None, url=None):
        client = Client(url or live_server.url, token or plane_agent.token)
        code = main(["--json", *argv], client=client)
        out = capsys.readouterr().out
        return code, json.loads(out) if out.strip() else None

    return run


def test_succeeded_is_0_and_pending_is_3(cli, celery_drain):
    code, read = cli("submit", "user.current", "--portal", "demo")
    assert code == 3 and read["status"] == "approved"
    celery_drain()
    code, done = cli("get", read["id"], "--wait", "1")
    assert code == 0 and done["status"] == "succeeded"
    code, waited = cli("wait", read["id"], "--timeout", "1")
    assert code == 0 and waited["id"] == read["id"]
    code, chain = cli("submit", "--portal", "demo", "--steps",
                      '[{"name": "me", "method": "user.current"}, {"name": "leads", "method": "crm.lead.list"}]')
    assert code == 3 and [s["name"] for s in chain["steps"]] == ["me", "leads"]
    for command in (["capabilities"], ["describe", "crm.lead.add", "--portal", "demo"], ["list", "--limit", "1"]):
        assert cli(*command)[0] == 0


def test_failed_states_are_1(cli, make_approver, sandbox_portal):
    approver = make_approver("alice", portals=[sandbox_portal])
    code, pending = cli("submit", "crm.lead.add", "--portal", "demo", "--params", '{"fields": {"TITLE": "x"}}',
                        "--reason", "test")
    assert code == 3 and pending["status"] == "pending_approval"
    services.plan_decide(plan_id=pending["id"], user=approver, decision="reject", comment="no")
    code, rejected = cli("wait", pending["id"], "--timeout", "5")
    assert code == 1 and rejected["status"] == "rejected"

    code, other = cli("submit", "crm.lead.add", "--portal", "demo", "--params", "{}")
    code, cancelled = cli("cancel", other["id"])
    assert code == 0 and cancelled["status"] == "cancelled"
    assert cli("get", other["id"])[0] == 1
    code, again = cli("cancel", other["id"])
    assert code == 5 and again["error"]["code"] == "conflict"


def test_refused_is_4_and_names_the_pack(cli, capsys, live_server, plane_agent):
    code, answer = cli("submit", "im.message.add", "--portal", "demo", "--params", '{"MESSAGE": "hi"}')
    assert code == 4 and answer["error"]["code"] == "not_granted" and answer["error"]["pack"] == "comms"
    code, dry = cli("submit", "im.message.add", "--portal", "demo", "--dry-run")
    assert code == 4 and dry["dry_run"] is True and dry["outcome"] == "not_granted"
    code, dry = cli("submit", "crm.lead.delete", "--portal", "demo", "--params", '{"id": 1}', "--dry-run")
    assert code == 0 and dry["would_be"] == "pending_approval" and dry["approvals_required"] == 2

    # without --json: a one-line message on stderr naming the pack
    code = main(["submit", "im.message.add", "--portal", "demo"], client=Client(live_server.url, plane_agent.token))
    assert code == 4 and "'comms' pack would grant it" in capsys.readouterr().err


def test_denied_by_policy_is_4(cli, sandbox_portal, make_agent):
    strict = make_agent("strict", portal=sandbox_portal, destructive="deny")
    code, answer = cli("submit", "crm.lead.delete", "--portal", "demo", "--params", '{"id": 1}', token=strict.token)
    assert code == 4 and answer["error"]["code"] == "denied_by_policy"


def test_other_api_errors_are_5(cli):
    code, answer = cli("get", "00000000-0000-0000-0000-000000000000")
    assert code == 5 and answer["error"]["code"] == "not_found"
    code, answer = cli("capabilities", token="not-a-real-token")
    assert code == 5 and answer["error"]["code"] == "unauthenticated"
    code, answer = cli("submit", "crm.lead.add", "--portal", "demo", "--params", '{"a": 1}', "--callback-url", "ftp://x")
    assert code == 5 and answer["error"]["field"] == "callback_url"
    code, answer = cli("events", "--after", "not-a-cursor")
    assert code == 5 and answer["error"]["field"] == "after"


def test_usage_is_2_and_unreachable_is_6(cli, tmp_path):
    assert cli("submit", "crm.lead.add", "--portal", "demo", "--params", "{not json")[0] == 2
    assert cli("submit", "crm.lead.add", "--portal", "demo", "--params", "[1]")[0] == 2
    assert cli("submit", "--portal", "demo")[0] == 2
    assert cli("submit", "user.current", "--portal", "demo", "--steps", "[]")[0] == 2
    assert cli("submit", "user.current", "--portal", "demo", "--params", f"@{tmp_path / 'missing.json'}")[0] == 2
    with pytest.raises(SystemExit) as exited:
        main(["frobnicate"])
    assert exited.value.code == 2
    code, answer = cli("capabilities", url="http://127.0.0.1:9")
    assert code == 6 and answer["error"]["code"] == "unreachable"


def test_params_from_a_file(cli, tmp_path):
    params = tmp_path / "lead.json"
    params.write_text('{"fields": {"TITLE": "From a file"}}')
    code, plan = cli("submit", "crm.lead.add", "--portal", "demo", "--params", f"@{params}")
    assert code == 3 and plan["steps"][0]["params"] == {"fields": {"TITLE": "From a file"}}


def test_client_errors_carry_the_api_code(live_server, plane_agent):
    client = Client(live_server.url, plane_agent.token)
    with pytest.raises(ApiError) as caught:
        client.submit("demo", method="im.message.add")
    assert caught.value.status == 403 and caught.value.refused and caught.value.pack == "comms"
    with pytest.raises(ApiError) as caught:
        client.describe("crm.lead.add", portal="nowhere")
    assert caught.value.code == "not_found" and not caught.value.refused
    described = client.describe("crm.lead.delete", portal="demo")
    assert described["risk"] == "destructive" and described["policy"] == "approve2"
