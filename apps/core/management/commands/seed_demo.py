"""Idempotent demo: an admin, a second approver, the sandbox portal `demo`, an agent with the core
pack. Generated secrets are kept in DATA_DIR/demo-credentials.json (mode 0600, git-ignored) so a
re-run prints the same login and token."""

import json
import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from apps.agents.models import Agent
from apps.agents.tokens import generate_token, hash_token
from apps.policy.services import grant_upsert
from apps.portals.models import AuthMode
from apps.portals.services import portal_upsert

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
        from apps.sandbox.services import sandbox_portal_ensure, sandbox_webhook_create

        path = settings.DATA_DIR / "demo-credentials.json"
        demo = _load_secrets(path)
        demo.setdefault("admin_password", secrets.token_urlsafe(12))
        demo.setdefault("reviewer_password", secrets.token_urlsafe(12))
        demo.setdefault("webhook_code", secrets.token_hex(8))
        demo.setdefault("agent_token", generate_token())
        User = get_user_model()

        with transaction.atomic():
            approvers, _ = Group.objects.get_or_create(name="Approvers")
            approvers.permissions.add(*Permission.objects.filter(
                content_type__app_label="plans",
                codename__in=["approve_plan", "view_plan", "view_pendingplan", "view_approval"]))
            admin, _ = User.objects.get_or_create(username="admin", defaults={"email": "admin@example.com"})
            admin.is_staff = admin.is_superuser = True
            admin.set_password(demo["admin_password"])
            admin.save()
            reviewer, _ = User.objects.get_or_create(username="reviewer", defaults={"email": "reviewer@example.com"})
            reviewer.is_staff = True
            reviewer.set_password(demo["reviewer_password"])
            reviewer.save()
            reviewer.groups.add(approvers)

            sandbox = sandbox_portal_ensure(slug=DEMO_PORTAL)
            sandbox_webhook_create(portal=sandbox, user_id=1, code=demo["webhook_code"])
            portal, _ = portal_upsert(
                slug=DEMO_PORTAL, name="Demo (sandbox)", auth_mode=AuthMode.WEBHOOK,
                base_url=f"{settings.SANDBOX_BASE_URL.rstrip('/')}/sandbox/{DEMO_PORTAL}",
                secrets={"webhook_code": demo["webhook_code"]}, fields={"webhook_user_id": "1"},
            )
            portal.approvers.add(admin, reviewer)

            agent = Agent.objects.filter(slug=DEMO_AGENT).first()
            if agent is None:
                agent = Agent.objects.create(slug=DEMO_AGENT, name="Demo agent", token_hash="pending", token_prefix="")
            Agent.objects.filter(pk=agent.pk).update(token_hash=hash_token(demo["agent_token"]),
                                                     token_prefix=demo["agent_token"][:10], is_active=True,
                                                     revoked_at=None)
            grant_upsert(agent=agent, portal=portal, pack="core")
        _save_secrets(path, demo)

        self.stdout.write(self.style.SUCCESS("Demo ready."))
        site = settings.SANDBOX_BASE_URL.rstrip("/")
        self.stdout.write(f"  Admin:    {site}/admin/  user admin     password {demo['admin_password']}")
        self.stdout.write(f"  Approver: a second approver  user reviewer  password {demo['reviewer_password']}")
        self.stdout.write(f"  Portal:   {DEMO_PORTAL} (sandbox at {portal.base_url})")
        self.stdout.write(f"  Agent:    {DEMO_AGENT}, core pack: read auto, write approve, destructive approve2")
        self.stdout.write("  Agent token:")
        self.stdout.write(demo["agent_token"])
