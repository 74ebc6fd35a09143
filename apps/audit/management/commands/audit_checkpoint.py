from django.core.management.base import BaseCommand, CommandError

from apps.audit.services import CheckpointSinkError, audit_checkpoint


class Command(BaseCommand):
    help = "Sign and publish a checkpoint of every audit chain head that moved, to the sink outside the database."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="publish every chain head, moved or not")

    def handle(self, *args, **opts):
        try:
            published = audit_checkpoint(force=opts["force"])
        except CheckpointSinkError as exc:
            raise CommandError(exc.message) from None
        for cp in published:
            self.stdout.write(f"checkpoint {cp['chain']} #{cp['seq']} {cp['hash'][:16]}… key {cp['kid']}")
        self.stdout.write(f"{len(published)} checkpoint(s) published.")
