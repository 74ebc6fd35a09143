from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from apps.core.exceptions import ApplicationError
from apps.portals.models import Portal
from apps.portals.services import portal_approvers_add, portal_approvers_remove


class Command(BaseCommand):
    help = ("List a portal's approvers; --add and --remove change the list (audited). Approvers also need the "
            "plans.approve_plan permission (e.g. the Approvers group).")

    def add_arguments(self, parser):
        parser.add_argument("portal", help="The portal's slug")
        parser.add_argument("--add", nargs="+", action="extend", default=[], metavar="USER", help="Usernames to add")
        parser.add_argument("--remove", nargs="+", action="extend", default=[], metavar="USER",
                            help="Usernames to remove")

    def handle(self, *args, **opts):
        portal = Portal.objects.filter(slug=opts["portal"]).first()
        if portal is None:
            raise CommandError(f"No portal {opts['portal']!r}; the portals are: "
                               f"{', '.join(Portal.objects.values_list('slug', flat=True)) or 'none yet'}.")
        both = sorted(set(opts["add"]) & set(opts["remove"]))
        if both:
            raise CommandError(f"{', '.join(both)}: both --add and --remove; give each user once.")
        to_add, to_remove = self._users(opts["add"]), self._users(opts["remove"])
        try:
            added = portal_approvers_add(portal=portal, users=to_add) if to_add else []
            removed = portal_approvers_remove(portal=portal, users=to_remove) if to_remove else []
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        if added:
            self.stdout.write(f"Added {', '.join(u.get_username() for u in added)}.")
        if removed:
            self.stdout.write(f"Removed {', '.join(u.get_username() for u in removed)}.")
        if (to_add or to_remove) and not (added or removed):
            self.stdout.write("Nothing to change.")
        approvers = list(portal.approvers.order_by("username"))
        self.stdout.write(f"Approvers of {portal.slug}: {', '.join(u.get_username() for u in approvers) or 'none'}")
        for user in approvers:
            if not user.is_active:
                self.stdout.write(f"  note: {user.get_username()} is inactive and cannot decide.")
            elif not user.has_perm("plans.approve_plan"):
                self.stdout.write(f"  note: {user.get_username()} lacks the plans.approve_plan permission "
                                  "(add them to the Approvers group) and cannot decide yet.")

    def _users(self, names):
        User = get_user_model()
        found = {u.get_username(): u for u in User.objects.filter(**{f"{User.USERNAME_FIELD}__in": names})}
        missing = [n for n in names if n not in found]
        if missing:
            raise CommandError(f"No user {', '.join(repr(n) for n in missing)}: create them first "
                               "(manage.py createsuperuser, or Users in the admin).")
        return [found[n] for n in dict.fromkeys(names)]
