from django.core.management.base import BaseCommand, CommandError

from apps.core.exceptions import ApplicationError
from apps.sandbox.errors import FAULT_ERRORS, MOVED
from apps.sandbox.models import SandboxPortal
from apps.sandbox.services import sandbox_clear_fault, sandbox_set_fault


class Command(BaseCommand):
    help = ("Switch a sandbox portal to answer a documented system error (or a 302 to a new address, or "
            "'Https required' for plain HTTP), so the transport's handling can be tried end to end.")

    def add_arguments(self, parser):
        parser.add_argument("slug", help="The sandbox portal (its URL is /sandbox/<slug>)")
        parser.add_argument("error", nargs="?", default=None, choices=[MOVED, *FAULT_ERRORS],
                            help="The error to answer")
        parser.add_argument("--calls", type=int, default=-1, help="Only the next N calls (default: until cleared)")
        parser.add_argument("--moved-to", default=None, help="With MOVED: the new portal address")
        https = parser.add_mutually_exclusive_group()
        https.add_argument("--require-https", action="store_true", default=None,
                           help="Plain-HTTP calls get INVALID_REQUEST 'Https required.'")
        https.add_argument("--allow-http", action="store_false", dest="require_https")
        parser.add_argument("--clear", action="store_true", help="Switch every fault off and allow plain HTTP")

    def handle(self, *args, **opts):
        portal = SandboxPortal.objects.filter(slug=opts["slug"]).first()
        if portal is None:
            raise CommandError(f"No sandbox portal {opts['slug']!r}.")
        try:
            if opts["clear"]:
                portal = sandbox_clear_fault(portal=portal)
            elif opts["error"] is not None or opts["require_https"] is not None:
                portal = sandbox_set_fault(portal=portal, error=opts["error"] or portal.fault_error,
                                           calls=opts["calls"], moved_to=opts["moved_to"],
                                           require_https=opts["require_https"])
        except ApplicationError as exc:
            raise CommandError(str(exc)) from None
        remaining = "every call" if portal.fault_error_remaining < 0 else f"{portal.fault_error_remaining} call(s)"
        fault = f"{portal.fault_error} ({remaining})" if portal.fault_error else "none"
        if portal.fault_error == MOVED:
            fault += f" -> {portal.moved_to}"
        self.stdout.write(f"{portal.slug}: fault {fault}; https required: {'yes' if portal.require_https else 'no'}")
