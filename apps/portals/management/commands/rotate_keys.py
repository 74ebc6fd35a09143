from django.core.management.base import BaseCommand, CommandError

from apps.portals.crypto import UndecryptableSecrets, secrets_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret under the first key of FIELD_ENCRYPTION_KEYS (after putting a "
        "new key first). Idempotent; prints counts, never a secret."
    )

    def handle(self, *args, **opts):
        try:
            report = secrets_rotate()
        except UndecryptableSecrets as exc:
            raise CommandError(f"{exc} Nothing was changed.") from None
        for item in report.fields:
            self.stdout.write(f"{item.model}.{item.field}: {item.rotated} re-encrypted, {item.current} already current")
        if report.rotated:
            self.stdout.write(self.style.SUCCESS(
                f"Re-encrypted {report.rotated} secret(s) under the first key; {report.current} were already current."
            ))
        else:
            self.stdout.write(self.style.SUCCESS(
                f"Nothing to do: all {report.current} stored secret(s) are under the first key."
            ))
