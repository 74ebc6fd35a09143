from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from apps.core.exceptions import ApplicationError
from apps.plans import services


class Command(BaseCommand):
    help = "Approve or reject a plan from a terminal: the same service and rules as the admin buttons."

    def add_arguments(self, parser):
        parser.add_argument("plan_id")
        parser.add_argument("--as", dest="username", required=True)
        decision = parser.add_mutually_exclusive_group(required=True)
        decision.add_argument("--approve", action="store_true")
        decision.add_argument("--reject", action="store_true")
        parser.add_argument("--comment", default="")

    def handle(self, *args, **opts):
        user = get_user_model().objects.filter(username=opts["username"]).first()
        if user is None:
            raise CommandError(f"No user {opts['username']!r}.")
        try:
            plan = services.plan_decide(plan_id=opts["plan_id"], user=user,
                                        decision="approve" if opts["approve"] else "reject", comment=opts["comment"])
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"Plan {plan.pk}: {plan.get_status_display()} ({plan.status}).")
