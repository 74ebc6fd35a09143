"""The scripted set-up commands."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.agents.models import Agent
from apps.agents.tokens import hash_token
from apps.policy.models import PackGrant
from apps.portals.models import Portal

pytestmark = pytest.mark.django_db


def run(*args):
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_add_portal_webhook_then_update():
    out = run("add_portal", "acme", "--url", "https://acme.bitrix24.com/", "--webhook-user", "7",
              "--webhook-code", "abc123", "--rps", "5", "--burst", "250")
    assert "Created" in out
    portal = Portal.objects.get(slug="acme")
    assert portal.base_url == "https://acme.bitrix24.com" and portal.rate_per_second == 5 and portal.burst == 250
    assert portal.credential.webhook_code == "abc123" and portal.credential.webhook_user_id == "7"
    assert "abc123" not in out
    assert "Updated" in run("add_portal", "acme", "--url", "https://acme.bitrix24.com", "--webhook-user", "7",
                            "--webhook-code", "new")
    portal.credential.refresh_from_db()
    assert portal.credential.webhook_code == "new"


def test_add_portal_oauth():
    run("add_portal", "oa", "--url", "https://oa.bitrix24.com", "--client-id", "local.1", "--client-secret", "s",
        "--access-token", "at", "--refresh-token", "rt", "--application-token", "apt")
    cred = Portal.objects.get(slug="oa").credential
    assert (cred.client_id, cred.client_secret, cred.access_token, cred.refresh_token, cred.application_token) == (
        "local.1", "s", "at", "rt", "apt")


@pytest.mark.parametrize("args, message", [
    (["--url", "http://acme.example.com", "--webhook-user", "1", "--webhook-code", "c"], "HTTPS"),
    (["--url", "https://acme.example.com"], "either"),
    (["--url", "https://acme.example.com", "--webhook-user", "1"], "both"),
    (["--url", "https://acme.example.com", "--webhook-user", "x", "--webhook-code", "c"], "numeric"),
    (["--url", "https://acme.example.com", "--client-id", "x"], "OAuth needs"),
    (["--url", "ftp://acme.example.com", "--webhook-user", "1", "--webhook-code", "c"], "https://"),
])
def test_add_portal_refuses_bad_input(args, message):
    with pytest.raises(CommandError, match=message):
        run("add_portal", "bad", *args)
    assert not Portal.objects.filter(slug="bad").exists()


def test_loopback_http_only_when_allowed(settings):
    settings.PORTAL_ALLOW_LOOPBACK_HTTP = False
    with pytest.raises(CommandError):
        run("add_portal", "local", "--url", "http://127.0.0.1:8000/sandbox/x", "--webhook-user", "1",
            "--webhook-code", "c")
    settings.PORTAL_ALLOW_LOOPBACK_HTTP = True
    run("add_portal", "local", "--url", "http://127.0.0.1:8000/sandbox/x", "--webhook-user", "1", "--webhook-code", "c")
    assert Portal.objects.filter(slug="local").exists()


def test_create_agent_prints_token_last(portal):
    out = run("create_agent", "bot", "--portal", "acme", "--packs", "core,diagnostics", "--write", "approve2")
    token = out.strip().splitlines()[-1]
    agent = Agent.objects.get(slug="bot")
    assert agent.token_hash == hash_token(token)
    grants = {g.pack: g for g in PackGrant.objects.filter(agent=agent)}
    assert set(grants) == {"core", "diagnostics"} and grants["core"].write_policy == "approve2"


@pytest.mark.parametrize("args, message", [
    (["--portal", "nope", "--packs", "core"], "No portal"),
    (["--portal", "acme", "--packs", "core,madeup"], "Unknown pack"),
    (["--portal", "acme", "--packs", "core", "--read", "sometimes"], "read is one of"),
])
def test_create_agent_refuses_bad_input(portal, args, message):
    with pytest.raises(CommandError, match=message):
        run("create_agent", "bot", *args)
    assert not Agent.objects.filter(slug="bot").exists()  # nothing half-made


def test_seed_demo_is_idempotent(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    first = run("seed_demo")
    second = run("seed_demo")
    assert first == second
    token = first.strip().splitlines()[-1]
    agent = Agent.objects.get(slug="demo-agent")
    assert agent.token_hash == hash_token(token)
    assert Portal.objects.get(slug="demo").approvers.filter(username="admin").exists()
    assert PackGrant.objects.filter(agent=agent, pack="core").count() == 1
    assert oct((tmp_path / "demo-credentials.json").stat().st_mode)[-3:] == "600"
