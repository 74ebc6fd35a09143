from django.core.management.base import BaseCommand, CommandError

from apps.audit.services import audit_verify


class Command(BaseCommand):
    help = ("Verify every audit chain (keyed hashes, links, heads) against the signed checkpoints; exits "
            "non-zero naming the first bad entry or the missing range of each bad chain.")

    def add_arguments(self, parser):
        parser.add_argument("--checkpoints", metavar="FILE",
                            help="checkpoint JSONL fetched from the sink (default: AUDIT_CHECKPOINT_PATH)")

    def handle(self, *args, **opts):
        result = audit_verify(checkpoints_path=opts["checkpoints"])
        if not result.ok:
            for problem in result.problems:
                self.stderr.write(f"BROKEN {problem}")
            where = f"{result.chain} entry #{result.bad_seq}" if result.bad_seq else "checkpoints"
            raise CommandError(f"Audit chain broken at {where}: {result.problem} "
                               f"({len(result.problems)} problem(s); {result.checked} entries verified).")
        anchored = (f"against {result.checkpoints} signed checkpoint(s)" if result.checkpoints
                    else "WITHOUT checkpoints (run audit_checkpoint: truncation and wiping cannot be detected)")
        self.stdout.write(f"Audit chains intact: {result.checked} entries in {result.chains} chain(s), "
                          f"verified {anchored}.")
