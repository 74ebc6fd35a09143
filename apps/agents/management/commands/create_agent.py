from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from apps.agents.services import agent_create
from apps.core.exceptions import ApplicationError
from apps.policy.services import grant_upsert
from apps.portals.models import Portal


class Command(BaseCommand):
    help = "Create an agent with pack grants on one portal. Prints the bearer token alone on the last line."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--portal", required=True)
        parser.add_argument("--packs", required=True, help="Comma-separated, e.g. core,diagnostics")
        parser.add_argument("--read", default="auto")
        parser.add_argument("--write", default="approve")
        parser.add_argument("--destructive", default="approve2")
        parser.add_argument("--owner", default=None, help="Username of the responsible person")
        parser.add_argument("--name", default="")

    def handle(self, *args, **opts):
        portal = Portal.objects.filter(slug=opts["portal"]).first()
        if portal is None:
            raise CommandError(f"No portal {opts['portal']!r}; create it with add_portal.")
        owner = None
        if opts["owner"]:
            owner = get_user_model().objects.filter(username=opts["owner"]).first()
            if owner is None:
                raise CommandError(f"No user {opts['owner']!r} to own the agent: create it first "
                                   "(manage.py createsuperuser, or Users in the admin), or leave out --owner.")
        packs = [p.strip() for p in opts["packs"].split(",") if p.strip()]
        if not packs:
            raise CommandError("--packs names at least one pack.")
        try:
            with transaction.atomic():
                agent, token = agent_create(slug=opts["slug"], name=opts["name"], owner=owner)
                for pack in packs:
                    grant_upsert(agent=agent, portal=portal, pack=pack, read=opts["read"], write=opts["write"],
                                 destructive=opts["destructive"])
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"Created agent {agent.slug} on {portal.slug} with {', '.join(packs)} "
                          f"(read {opts['read']}, write {opts['write']}, destructive {opts['destructive']}).")
        self.stdout.write("Callback secret (signs plan callbacks to this agent; shown once):")
        self.stdout.write(agent.callback_secret)
        self.stdout.write("Bearer token (shown once):")
        self.stdout.write(token)
