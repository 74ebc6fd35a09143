from django.core.management.base import BaseCommand, CommandError

from apps.audit.services import audit_chains, audit_export_lines, audit_export_prepare
from apps.core.exceptions import ApplicationError


class Command(BaseCommand):
    help = ("Export a range of one audit chain as JSONL or CSV, with the signed checkpoint that covers it; "
            "verify it offline with `python -m apps.audit.offline_verify FILE --key-file KEYS`.")

    def add_arguments(self, parser):
        parser.add_argument("--chain", help="the chain: portal:<slug> or system (omit to list the chains)")
        parser.add_argument("--from", dest="start", type=int, default=1, help="first entry (default 1)")
        parser.add_argument("--to", dest="stop", type=int, default=None, help="last entry (default: the head)")
        parser.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
        parser.add_argument("--out", help="output file (default: stdout)")

    def handle(self, *args, **opts):
        if not opts["chain"]:
            for chain in audit_chains():
                self.stdout.write(chain)
            return
        try:
            plan = audit_export_prepare(chain=opts["chain"], start=opts["start"], stop=opts["stop"],
                                        fmt=opts["format"])
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        if opts["out"]:
            try:
                with open(opts["out"], "w", encoding="utf-8", newline="") as fh:
                    for chunk in audit_export_lines(plan):
                        fh.write(chunk)
            except OSError as exc:
                raise CommandError(f"Cannot write {opts['out']}: {exc.strerror}.") from None
            self.stderr.write(f"Exported {plan.chain} #{plan.start}..#{plan.stop} (through checkpoint "
                              f"#{plan.checkpoint['seq']}) to {opts['out']}.")
        else:
            for chunk in audit_export_lines(plan):
                self.stdout.write(chunk, ending="")
