"""Idempotent demo: an admin, a second approver, the sandbox portal `demo`, an agent with the core
pack. Generated secrets are kept in DATA_DIR/demo-credentials.json (mode 0600, git-ignored) so a
re-run prints the same login and token. Every write goes through a service (portals, agents,
policy, sandbox, and apps.demo.services for the demo's accounts)."""

import json
import os
import secrets

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from apps.agents.models import Agent
from apps.agents.services import agent_create, agent_rotate_token
from apps.agents.tokens import generate_token, hash_token
from apps.core.exceptions import ApplicationError
from apps.demo.services import demo_accounts_ensure
from apps.policy.services import grant_upsert
from apps.portals.models import AuthMode
from apps.portals.services import portal_approvers_add, portal_upsert

DEMO_PORTAL = "demo"
DEMO_AGENT = "demo-agent"


def _load_secrets(path):
    if path.exists():
        try:
            return json.loads(path.read_text())
        except ValueError:
            pass
    return {}


def _save_secrets(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)


class Command(BaseCommand):
    help = "Seed the demo (idempotent): admin login, sandbox portal 'demo', agent 'demo-agent' with the core pack."

    def handle(self, *args, **opts):
        if not settings.SANDBOX_ENABLED:
            raise CommandError("seed_demo needs the sandbox portal: set SANDBOX_ENABLED=1 (on with DEBUG).")
        path = settings.DATA_DIR / "demo-credentials.json"
        demo = _load_secrets(path)
        demo.setdefault("admin_password", secrets.token_urlsafe(12))
        demo.setdefault("reviewer_password", secrets.token_urlsafe(12))
        demo.setdefault("webhook_code", secrets.token_hex(8))
        demo.setdefault("agent_token", generate_token())
        try:
            portal = self._seed(demo)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        _save_secrets(path, demo)

        self.stdout.write(self.style.SUCCESS("Demo ready."))
        site = settings.SANDBOX_BASE_URL.rstrip("/")
        self.stdout.write(f"  Admin:    {site}/admin/  user admin     password {demo['admin_password']}")
        self.stdout.write(f"  Approver: a second approver  user reviewer  password {demo['reviewer_password']}")
        self.stdout.write(f"  Portal:   {DEMO_PORTAL} (sandbox at {portal.base_url})")
        self.stdout.write(f"  Agent:    {DEMO_AGENT}, core pack: read auto, write approve, destructive approve2")
        self.stdout.write("  Agent token:")
        self.stdout.write(demo["agent_token"])

    def _lead_events_hook(self, sandbox) -> str:
        """The sandbox posts ONCRMLEADADD to the demo portal's event handler (an outgoing webhook,
        as a portal admin sets one up), so `make run` shows events arriving. Returns the token the
        portal signs them with."""
        from apps.sandbox.models import SandboxEventHandler
        from apps.sandbox.services import sandbox_outgoing_webhook_create
        from apps.sandbox.tokens import application_token

        handler = f"{settings.SITE_URL.rstrip('/')}/hooks/bitrix24/events/{DEMO_PORTAL}"
        row = SandboxEventHandler.objects.filter(portal=sandbox, event="ONCRMLEADADD", handler=handler).first()
        if row is not None:
            return application_token(portal=sandbox, subject=f"hook:{row.pk}")
        return sandbox_outgoing_webhook_create(portal=sandbox, event="ONCRMLEADADD", handler=handler)[1]

    def _seed(self, demo):
        from apps.sandbox.services import sandbox_portal_ensure, sandbox_webhook_create

        with transaction.atomic():
            admin, reviewer = demo_accounts_ensure(admin_password=demo["admin_password"],
                                                   reviewer_password=demo["reviewer_password"])
            sandbox = sandbox_portal_ensure(slug=DEMO_PORTAL)
            sandbox_webhook_create(portal=sandbox, user_id=1, code=demo["webhook_code"])
            portal, _ = portal_upsert(
                slug=DEMO_PORTAL, name="Demo (sandbox)", auth_mode=AuthMode.WEBHOOK,
                base_url=f"{settings.SANDBOX_BASE_URL.rstrip('/')}/sandbox/{DEMO_PORTAL}",
                secrets={"webhook_code": demo["webhook_code"],
                         "application_token": self._lead_events_hook(sandbox)},
                fields={"webhook_user_id": "1"},
            )
            portal_approvers_add(portal=portal, users=[admin, reviewer])
            agent = Agent.objects.filter(slug=DEMO_AGENT).first()
            if agent is None:
                agent, _ = agent_create(slug=DEMO_AGENT, name="Demo agent", token=demo["agent_token"])
            elif agent.token_hash != hash_token(demo["agent_token"]) or not agent.is_active:
                agent_rotate_token(agent=agent, token=demo["agent_token"], reactivate=True)
            grant_upsert(agent=agent, portal=portal, pack="core")
        return portal
