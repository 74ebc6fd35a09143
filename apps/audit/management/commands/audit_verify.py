from django.core.management.base import BaseCommand, CommandError

from apps.audit.services import audit_verify


class Command(BaseCommand):
    help = "Check the audit hash chain; exits non-zero and names the first bad entry."

    def handle(self, *args, **opts):
        result = audit_verify()
        if not result.ok:
            raise CommandError(f"Audit chain broken at entry #{result.bad_seq}: {result.problem} "
                               f"({result.checked} entries verified before it).")
        self.stdout.write(f"Audit chain intact: {result.checked} entries.")
