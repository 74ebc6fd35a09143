"""`python -m clients.b24cp` (or the skill's `scripts/control_plane.py`): the client as a command.

The plane's address and the agent token come from the environment, never from arguments (so
they stay out of shell history and process lists): `B24CP_URL` (default http://127.0.0.1:8000)
and `B24CP_TOKEN`.

Exit codes (the same for every command):

| code | meaning |
|------|---------|
| 0 | succeeded (a plan that ran to `succeeded`, or a read of the API that answered) |
| 1 | failed: the plan ended `failed`, `rejected`, `expired` or `cancelled` |
| 2 | usage error (bad arguments, bad JSON in `--params`) |
| 3 | pending: not final yet (`pending_approval`, `approved`, `executing`) or `needs_reconciliation` |
| 4 | refused: no grant covers the method (`not_granted`, names the pack) or the policy denies it (`denied_by_policy`) |
| 5 | any other error the plane answered (`invalid_request`, `not_found`, `unauthenticated`, `rate_limited`, ...) |
| 6 | the plane could not be reached |

`export` (and `export-status`) exits 0 once the file is downloaded, 1 when the export ended
without a file, 3 when it is still waiting or running after `--timeout`; while it waits it draws
a progress bar on stderr (rows fetched of the estimated total, rate, time left).

`cancel` exits 0 when the plan is now cancelled, `export-cancel` when the export is (an export
that has already ended is `conflict`, 5). `--json` prints the plane's answer (or
`{"error": {...}}`) as JSON on stdout; without it a short human summary is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from .client import EXPORT_FINAL_STATES, FINAL_STATES, MAX_SERVER_WAIT, ApiError, Client, ClientError, Unreachable

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PENDING, EXIT_REFUSED, EXIT_ERROR, EXIT_UNREACHABLE = 0, 1, 2, 3, 4, 5, 6
FAILED_STATES = frozenset({"failed", "rejected", "expired", "cancelled"})


class UsageError(Exception):
    pass


def plan_exit_code(plan: dict[str, Any]) -> int:
    """The exit code for a plan (or a dry-run answer) as the plane returned it."""
    if plan.get("dry_run"):
        return EXIT_OK if plan.get("allowed") else EXIT_REFUSED
    status = plan.get("status")
    if status == "succeeded":
        return EXIT_OK
    if status in FAILED_STATES:
        return EXIT_FAILED
    return EXIT_PENDING


def error_exit_code(exc: ClientError) -> int:
    if isinstance(exc, Unreachable):
        return EXIT_UNREACHABLE
    if isinstance(exc, ApiError):
        return EXIT_REFUSED if exc.refused else EXIT_ERROR
    return EXIT_USAGE


def _json_arg(value: str | None, *, name: str, kind: type) -> Any:
    if value is None:
        return None
    if value.startswith("@"):
        try:
            with open(value[1:], encoding="utf-8") as handle:
                value = handle.read()
        except OSError as exc:
            raise UsageError(f"{name}: cannot read {value[1:]}: {exc.strerror}") from None
    try:
        data = json.loads(value)
    except ValueError as exc:
        raise UsageError(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(data, kind):
        raise UsageError(f"{name} must be a JSON {'object' if kind is dict else 'array'}.")
    return data


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="b24cp", description="Agent client of the Bitrix24 control plane (B24CP_URL, B24CP_TOKEN).",
        epilog="Exit codes: 0 succeeded, 1 failed, 2 usage, 3 pending, 4 refused, 5 other API error, 6 unreachable.",
    )
    parser.add_argument("--json", action="store_true", help="print the plane's JSON answer")
    sub = parser.add_subparsers(dest="command", required=True)

    submit = sub.add_parser("submit", help="submit a call or a chain as a plan")
    submit.add_argument("method", nargs="?", help="Bitrix24 method, e.g. crm.lead.add (or use --steps)")
    submit.add_argument("--portal", required=True)
    submit.add_argument("--params", help="JSON object (or @file)")
    submit.add_argument("--steps", help="JSON array of {name, method, params} (or @file)")
    submit.add_argument("--reason", help="why: shown to the approvers")
    submit.add_argument("--idempotency-key")
    submit.add_argument("--callback-url")
    submit.add_argument("--wait", type=float, default=0, help="seconds to wait for a final status")
    submit.add_argument("--dry-run", action="store_true", help="say what would happen; create nothing")

    for name, helptext in (("get", "show a plan (alias: poll)"), ("poll", "show a plan")):
        get = sub.add_parser(name, help=helptext)
        get.add_argument("plan_id")
        get.add_argument("--wait", type=float, default=0, help="long-poll up to 30 s")

    wait = sub.add_parser("wait", help="wait until a plan is final")
    wait.add_argument("plan_id")
    wait.add_argument("--timeout", type=float, default=60)

    cancel = sub.add_parser("cancel", help="cancel a plan before it executes")
    cancel.add_argument("plan_id")

    lst = sub.add_parser("list", help="my plans, newest first")
    lst.add_argument("--status")
    lst.add_argument("--portal")
    lst.add_argument("--limit", type=int)
    lst.add_argument("--cursor")

    sub.add_parser("capabilities", help="portals, packs and policies granted to me")

    describe = sub.add_parser("describe", help="risk, scope, packs and my policy for a method")
    describe.add_argument("name")
    describe.add_argument("--portal", required=True)

    events = sub.add_parser("events", help="inbound Bitrix24 events my packs may read")
    events.add_argument("--after")
    events.add_argument("--wait", type=float, default=0)
    events.add_argument("--limit", type=int)

    export = sub.add_parser("export", help="every row of a list method to a file, with a progress bar")
    export.add_argument("method", help="a list method, e.g. crm.lead.list")
    export.add_argument("--portal", required=True)
    export.add_argument("--select", help="fields: ID,TITLE or a JSON array (or @file)")
    export.add_argument("--filter", help="JSON object (or @file)")
    export.add_argument("--order", help='JSON object, e.g. {"ID": "ASC"} (the default, and the fastest)')
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    export.add_argument("--reason", help="why: shown to the approvers if the policy asks for them")
    export.add_argument("--idempotency-key")
    _wait_args(export, submit=True)

    status = sub.add_parser("export-status", help="an export's progress; waits and downloads with --output")
    status.add_argument("export_id")
    _wait_args(status, submit=False)

    stop = sub.add_parser("export-cancel", help="stop an export that waits or runs (its partial file is removed)")
    stop.add_argument("export_id")
    return parser


def _wait_args(parser: argparse.ArgumentParser, *, submit: bool) -> None:
    parser.add_argument("-o", "--output", help="where to save the file (export: default <method>-<id>.<format>)")
    parser.add_argument("--timeout", type=float, default=3600.0 if submit else 0.0,
                        help="seconds to wait for the file" + (" (0: submit only)" if submit else ""))
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def _select_arg(value: str | None) -> list[str] | None:
    if value is None:
        return None
    if value.startswith(("[", "@")):
        return _json_arg(value, name="--select", kind=list)
    return [part.strip() for part in value.split(",") if part.strip()]


def _number(value: Any) -> str:
    return "?" if value is None else f"{value:,}"


def _seconds(value: Any) -> str:
    if value is None:
        return "?"
    value = int(round(value))
    return f"{value // 60}m{value % 60:02d}s" if value >= 60 else f"{value}s"


def progress_line(export: dict[str, Any], *, width: int = 30) -> str:
    """One line for the terminal: [#####.....]  40.0%  40,000/100,000 rows  4,000 rows/s  15s left."""
    progress = export.get("progress") or {}
    percent = progress.get("percent")
    filled = int(width * (percent or 0) / 100)
    bar = "#" * filled + "." * (width - filled)
    shown = "  ?  %" if percent is None else f"{percent:5.1f}%"
    rate = progress.get("rows_per_second")
    return (f"[{bar}] {shown}  {_number(progress.get('rows_fetched'))}/{_number(progress.get('estimated_total'))} "
            f"rows  {_number(None if rate is None else int(rate))} rows/s  {_seconds(progress.get('seconds_left'))} "
            f"left  ({export.get('status')})")


def export_exit_code(export: dict[str, Any]) -> int:
    status = export.get("status")
    if status == "succeeded":
        return EXIT_OK
    if status in EXPORT_FINAL_STATES:
        return EXIT_FAILED
    return EXIT_PENDING


def _follow_export(client: Client, export: dict[str, Any], args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    """Poll until the export is final or --timeout passes, drawing the bar; download on success."""
    deadline = time.monotonic() + max(0.0, args.timeout)
    draw = not args.no_progress
    while export.get("status") not in EXPORT_FINAL_STATES and time.monotonic() < deadline:
        if draw:
            print("\r" + progress_line(export), end="", file=sys.stderr, flush=True)
        time.sleep(max(0.05, min(args.interval, deadline - time.monotonic())))
        export = client.export_get(export["id"])
    if draw:
        print("\r" + progress_line(export), file=sys.stderr, flush=True)
    if export.get("status") == "succeeded" and (args.output or args.timeout > 0):
        path = args.output or f"{export['method']}-{export['id']}.{export['format']}"
        export = {**export, "saved_to": path, "saved_bytes": client.export_download(export["id"], path)}
    return export_exit_code(export), export


def run(args: argparse.Namespace, client: Client) -> tuple[int, dict[str, Any]]:
    """Run one parsed command; returns (exit code, the answer to print)."""
    if args.command == "submit":
        params = _json_arg(args.params, name="--params", kind=dict)
        steps = _json_arg(args.steps, name="--steps", kind=list)
        if (args.method is None) == (steps is None):
            raise UsageError("Give a method, or --steps, not both.")
        if steps is not None and params is not None:
            raise UsageError("--params goes inside each step when --steps is given.")
        answer = client.submit(
            args.portal, method=args.method, params=params if args.method else None, steps=steps,
            reason=args.reason, idempotency_key=args.idempotency_key, callback_url=args.callback_url,
            wait=0 if args.dry_run else int(args.wait), dry_run=args.dry_run,
        )
        longer = args.wait - MAX_SERVER_WAIT
        if longer > 0 and not args.dry_run and answer.get("status") not in FINAL_STATES:
            answer = client.wait(answer["id"], timeout=longer)
        return plan_exit_code(answer), answer
    if args.command in ("get", "poll"):
        answer = client.get(args.plan_id, wait=int(args.wait))
        return plan_exit_code(answer), answer
    if args.command == "wait":
        answer = client.wait(args.plan_id, timeout=args.timeout)
        return plan_exit_code(answer), answer
    if args.command == "cancel":
        answer = client.cancel(args.plan_id)
        return (EXIT_OK if answer.get("status") == "cancelled" else plan_exit_code(answer)), answer
    if args.command == "list":
        return EXIT_OK, client.list(status=args.status, portal=args.portal, limit=args.limit, cursor=args.cursor)
    if args.command == "capabilities":
        return EXIT_OK, client.capabilities()
    if args.command == "describe":
        return EXIT_OK, client.describe(args.name, portal=args.portal)
    if args.command == "events":
        return EXIT_OK, client.events(after=args.after, wait=int(args.wait), limit=args.limit)
    if args.command == "export":
        if args.timeout < 0 or args.interval <= 0:
            raise UsageError("--timeout must be 0 or more and --interval more than 0.")
        answer = client.export(
            args.portal, args.method, select=_select_arg(args.select),
            filter=_json_arg(args.filter, name="--filter", kind=dict),
            order=_json_arg(args.order, name="--order", kind=dict), format=args.format, reason=args.reason,
            idempotency_key=args.idempotency_key)
        return _follow_export(client, answer, args)
    if args.command == "export-status":
        if args.timeout < 0 or args.interval <= 0:
            raise UsageError("--timeout must be 0 or more and --interval more than 0.")
        return _follow_export(client, client.export_get(args.export_id), args)
    if args.command == "export-cancel":
        answer = client.export_cancel(args.export_id)
        return (EXIT_OK if answer.get("status") == "cancelled" else export_exit_code(answer)), answer
    raise UsageError(f"Unknown command {args.command!r}.")  # argparse prevents this


def _summary(command: str, answer: dict[str, Any]) -> str:
    if command in ("export", "export-status", "export-cancel"):
        line = f"export {answer.get('id')}: {answer.get('status')} (plan {answer.get('plan_id')})"
        if answer.get("saved_to"):
            line += f"\nsaved {answer['saved_bytes']:,} bytes to {answer['saved_to']}"
        if answer.get("error"):
            line += f"\nerror: {json.dumps(answer['error'], ensure_ascii=False)}"
        return line
    if "status" in answer and "id" in answer:
        line = f"plan {answer['id']}: {answer['status']} (risk {answer.get('risk')})"
        if answer["status"] == "pending_approval":
            line += f"; waits for {answer.get('approvals_required')} approval(s)"
        if answer.get("error"):
            line += f"\nerror: {json.dumps(answer['error'], ensure_ascii=False)}"
        if answer.get("result") is not None:
            line += f"\nresult: {json.dumps(answer['result'], ensure_ascii=False)}"
        return line
    if answer.get("dry_run"):
        return f"dry run: {answer.get('outcome')} (would be {answer.get('would_be')}, risk {answer.get('risk')})"
    return json.dumps(answer, ensure_ascii=False, indent=2)


def main(argv: Sequence[str] | None = None, *, client: Client | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        client = client or Client.from_env()
        code, answer = run(args, client)
    except UsageError as exc:
        _emit_error(args.json, {"code": "usage", "message": str(exc)})
        return EXIT_USAGE
    except ApiError as exc:
        _emit_error(args.json, {"code": exc.code, "message": exc.message, **exc.details})
        return error_exit_code(exc)
    except ClientError as exc:
        code = error_exit_code(exc)
        _emit_error(args.json, {"code": "unreachable" if code == EXIT_UNREACHABLE else "usage", "message": str(exc)})
        return code
    if args.json:
        print(json.dumps(answer, ensure_ascii=False, indent=2))
    else:
        print(_summary(args.command, answer))
    return code


def _emit_error(as_json: bool, error: dict[str, Any]) -> None:
    if as_json:
        print(json.dumps({"error": error}, ensure_ascii=False, indent=2))
    else:
        hint = f" (the {error['pack']!r} pack would grant it)" if error.get("pack") else ""
        print(f"error {error['code']}: {error['message']}{hint}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
