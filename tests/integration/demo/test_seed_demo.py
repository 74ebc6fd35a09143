"""`manage.py seed_demo` (apps.demo): idempotent, and every write through a service."""

import json

import pytest

from apps.agents.models import Agent
from apps.agents.services import agent_revoke
from apps.agents.tokens import hash_token
from apps.audit.models import AuditEntry
from apps.audit.services import audit_verify
from apps.policy.models import PackGrant
from apps.portals.models import Portal
from apps.portals.services import credential_set_status
from tests.integration.cli import run

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def data_dir(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    return tmp_path


def test_seed_demo_is_idempotent(data_dir):
    first = run("seed_demo")
    second = run("seed_demo")
    assert first == second
    token = first.strip().splitlines()[-1]
    agent = Agent.objects.get(slug="demo-agent")
    assert agent.token_hash == hash_token(token)
    portal = Portal.objects.get(slug="demo")
    assert set(portal.approvers.values_list("username", flat=True)) == {"admin", "reviewer"}
    assert PackGrant.objects.filter(agent=agent, pack="core").count() == 1
    assert oct((data_dir / "demo-credentials.json").stat().st_mode)[-3:] == "600"
    assert json.loads((data_dir / "demo-credentials.json").read_text())["agent_token"] == token


def test_seed_demo_writes_through_the_audited_services():
    run("seed_demo")
    actions = list(AuditEntry.objects.order_by("pk").values_list("action", flat=True))
    assert actions == ["portal.changed", "portal.approvers_changed", "agent.created", "grant.changed"]
    run("seed_demo")
    again = list(AuditEntry.objects.order_by("pk").values_list("action", flat=True))[len(actions):]
    assert again == ["portal.changed", "grant.changed"]  # the same approvers and agent: nothing to record
    assert audit_verify().ok


def test_seed_demo_repairs_a_revoked_agent_and_a_broken_credential():
    token = run("seed_demo").strip().splitlines()[-1]
    agent = Agent.objects.get(slug="demo-agent")
    agent_revoke(agent=agent)
    credential_set_status(portal=Portal.objects.get(slug="demo"), status="broken", code="invalid_credentials")
    assert run("seed_demo").strip().splitlines()[-1] == token
    agent.refresh_from_db()
    assert agent.is_active and agent.token_hash == hash_token(token)
    assert Portal.objects.get(slug="demo").credential.status == "ok"


def test_seed_demo_keeps_an_existing_token_file(data_dir):
    run("seed_demo")
    saved = json.loads((data_dir / "demo-credentials.json").read_text())
    Agent.objects.all().delete()
    assert run("seed_demo").strip().splitlines()[-1] == saved["agent_token"]
