"""The one writer of the audit log, its checkpoints outside the database, its verifier and export.

Every state-changing service calls `audit_record(...)` inside its own transaction (house rule 3),
so the entry commits or rolls back with the change. Each portal has its own chain (plus the
system chain for entries with no portal); a writer locks only its chain's head row
(`select_for_update`), so a chain never forks and writers on different portals never wait for
each other. Entry hashes are HMAC-SHA256 under `AUDIT_KEYS` (see `offline_verify`, which holds
the chain rules and is also the auditor's standalone verifier).

A database writer without the key cannot forge or re-hash an entry; what they can still do
(delete the tail and rewind the head, wipe a chain) is caught by the signed checkpoints that
`audit_checkpoint` publishes outside the database.
"""

import contextlib
import contextvars
import csv
import datetime
import io
import itertools
import json
import logging
import os
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from apps.core import sql
from apps.core.canonical import canonical_json
from apps.core.exceptions import ApplicationError, InvalidRequest, NotFound

from . import registry
from .keys import macs, signing_kid
from .models import AuditCheckpoint, AuditEntry, AuditHead, chain_for
from .offline_verify import CHECKPOINT_TYPE, CSV_COLUMNS, EXPORT_TYPE, GENESIS, ChainReport, walk_chain
from .redaction import scrub

logger = logging.getLogger(__name__)


class CheckpointSinkError(ApplicationError):
    """A checkpoint could not be published to its sink outside the database."""

    code = "checkpoint_sink_failed"
    status = 503


def actor_of(actor) -> tuple[str, str]:
    """(actor_type, label) for a user, an agent, or None (the system)."""
    if actor is None:
        return "system", "system"
    if actor.__class__.__name__ == "Agent":
        return "agent", actor.slug
    return "user", actor.get_username()


def _hash_of(entry: AuditEntry) -> str:
    return macs().entry_hash(
        chain=entry.chain, seq=entry.seq, prev_hash=entry.prev_hash, created_at=entry.created_at.isoformat(),
        action=entry.action, actor_type=entry.actor_type, actor=entry.actor, portal=entry.portal,
        plan_id=str(entry.plan_id) if entry.plan_id else None, data=entry.data, key_id=entry.key_id,
    )


# Every audited change writes through `_append`: three fixed statements per chain (apps.core.sql;
# two on PostgreSQL, where the head moves inside the entries' INSERT)
# instead of three ORM queries compiled each time. Table and column names are the models'; every
# value is a parameter.
_ENTRY = sql.Columns(AuditEntry, ["chain", "seq", "created_at", "action", "actor_type", "actor", "portal",
                                  "plan_id", "data", "prev_hash", "hash", "key_id"])
_HEAD = AuditHead._meta.db_table
_HEAD_READ = f"SELECT seq, hash FROM {_HEAD} WHERE chain = %s"  # noqa: S608  # nosec B608
_HEAD_MOVE = f"UPDATE {_HEAD} SET seq = %s, hash = %s WHERE chain = %s"  # noqa: S608  # nosec B608


def _locked_head(chain: str) -> tuple[int, str]:
    """(seq, hash) of the chain's head, its row locked until the transaction ends."""
    db = transaction.get_connection()
    lock = " FOR UPDATE" if db.features.has_select_for_update else ""
    head = sql.fetchone(_HEAD_READ + lock, [chain])
    if head is None:  # the chain's first entry (get_or_create survives a concurrent first writer)
        AuditHead.objects.get_or_create(chain=chain)
        head = sql.fetchone(_HEAD_READ + lock, [chain])
    return head


_collector: contextvars.ContextVar[list | None] = contextvars.ContextVar("audit_collector", default=None)


def _prepare(*, action: str, actor, portal, plan, data: dict | None) -> AuditEntry:
    """The entry as it will be stored, short of its place in the chain (seq, prev_hash, hash)."""
    registry.get(action)  # unregistered actions fail loudly
    actor_type, actor_label = actor_of(actor)
    portal_slug = getattr(portal, "slug", portal) or ""
    # Round-trip through JSON so the hash computed now equals the one computed after a read.
    payload = json.loads(canonical_json(scrub(data or {})))
    return AuditEntry(
        chain=chain_for(portal_slug), created_at=timezone.now(), action=action, actor_type=actor_type,
        actor=actor_label, portal=portal_slug, plan_id=getattr(plan, "pk", plan), data=payload,
    )


def _append(entries: list[AuditEntry]) -> None:
    """Chain `entries` (in order) onto their chains: per chain, lock its head, hash the entries
    after it, insert them in one statement and move the head; all in one transaction."""
    if not entries:
        return
    kid = signing_kid()
    by_chain: dict[str, list[AuditEntry]] = {}
    for entry in entries:
        by_chain.setdefault(entry.chain, []).append(entry)
    with transaction.atomic(savepoint=False):
        db = transaction.get_connection()
        for chain in sorted(by_chain):  # a fixed order: two multi-chain writers never deadlock
            seq, prev = _locked_head(chain)
            chained = by_chain[chain]
            for entry in chained:
                seq += 1
                entry.seq, entry.prev_hash, entry.key_id = seq, prev, kid
                entry.hash = prev = _hash_of(entry)
            move = (_HEAD_MOVE, [seq, prev, chain])
            if db.vendor == "postgresql":  # the head moves in the entries' INSERT: one round trip fewer under its lock
                _ENTRY.insert(chained, along=move)
            else:
                _ENTRY.insert(chained)  # one multi-row INSERT; the entries get their ids
                sql.execute(*move)



def audit_record(*, action: str, actor=None, portal=None, plan=None, data: dict | None = None) -> AuditEntry:
    """Append one entry to its portal's chain, in the caller's transaction. Inside
    `audit_collected()` the entry is queued and written with the others when that block ends."""
    entry = _prepare(action=action, actor=actor, portal=portal, plan=plan, data=data)
    queued = _collector.get()
    if queued is not None:
        queued.append(entry)
    else:
        _append([entry])
    return entry


@contextlib.contextmanager
def audit_collected():
    """Queue the entries `audit_record` makes inside the block and write them when it ends, one
    multi-row insert per chain (a batch of plans costs three statements per chain, not three per
    entry). Use it inside the transaction that makes the audited changes, around code that does
    not catch errors from inner savepoints: an exception leaving the block drops the queue (the
    transaction rolls back with it). Nested blocks share the outermost queue."""
    if _collector.get() is not None:
        yield
        return
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit_collected() must run inside the transaction it audits.")
    queued: list[AuditEntry] = []
    token = _collector.set(queued)
    try:
        yield
    finally:
        _collector.reset(token)
    _append(queued)


# --- checkpoints -------------------------------------------------------------------------------


def _sign_checkpoint(*, chain: str, seq: int, entry_hash: str) -> dict:
    checkpoint = {"type": CHECKPOINT_TYPE, "chain": chain, "seq": seq, "hash": entry_hash,
                  "at": timezone.now().isoformat(), "kid": signing_kid()}
    checkpoint["sig"] = macs().checkpoint_signature(checkpoint)
    return checkpoint


def _publish_file(path: Path, lines: list[str]) -> None:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, "".join(lines).encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _publish_command(command: str, line: str) -> None:
    try:
        done = subprocess.run(shlex.split(command), input=line.encode("utf-8"), capture_output=True,  # noqa: S603
                              timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CheckpointSinkError(f"The checkpoint command could not run: {exc.__class__.__name__}.") from None
    if done.returncode != 0:
        raise CheckpointSinkError(f"The checkpoint command exited with status {done.returncode}.")


def _publish_url(url: str, checkpoint: dict) -> None:
    """POST with the standard library: `requests` stays the Bitrix24 transport's alone
    (apps.bitrix.http), and the audit app sits below every other app."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CheckpointSinkError("AUDIT_CHECKPOINT_URL must be an http(s) URL.")
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn = connection_class(parts.hostname, parts.port, timeout=30)
    try:
        conn.request("POST", target, body=json.dumps(checkpoint).encode("utf-8"),
                     headers={"Content-Type": "application/json"})
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        raise CheckpointSinkError(f"The checkpoint URL could not be reached: {exc.__class__.__name__}.") from None
    finally:
        conn.close()
    if not 200 <= status < 300:
        raise CheckpointSinkError(f"The checkpoint URL answered HTTP {status}.")


def publish_checkpoints(checkpoints: list[dict]) -> None:
    """Send to every configured sink: the file (AUDIT_CHECKPOINT_PATH, unless set empty), the
    command (AUDIT_CHECKPOINT_COMMAND, one JSON object on stdin per checkpoint) and the URL
    (AUDIT_CHECKPOINT_URL, one JSON POST per checkpoint). Raises CheckpointSinkError."""
    if not checkpoints:
        return
    path, command, url = (settings.AUDIT_CHECKPOINT_PATH, settings.AUDIT_CHECKPOINT_COMMAND,
                          settings.AUDIT_CHECKPOINT_URL)
    if not (path or command or url):
        raise CheckpointSinkError("No checkpoint sink is configured (AUDIT_CHECKPOINT_PATH, _COMMAND or _URL).")
    lines = [json.dumps(cp, sort_keys=True) + "\n" for cp in checkpoints]
    if path:
        try:
            _publish_file(Path(path), lines)
        except OSError as exc:
            raise CheckpointSinkError(f"The checkpoint file could not be written: {exc.strerror}.") from None
    for checkpoint, line in zip(checkpoints, lines, strict=True):
        if command:
            _publish_command(command, line)
        if url:
            _publish_url(url, checkpoint)


def _last_valid_copy(chain: str) -> AuditCheckpoint | None:
    checker = macs()
    for copy in AuditCheckpoint.objects.filter(chain=chain).order_by("-seq")[:20]:
        if not checker.checkpoint_problem(copy.as_dict()):
            return copy
    return None


def audit_checkpoint(*, force: bool = False, chains: list[str] | None = None) -> list[dict]:
    """Sign and publish a checkpoint of every chain head that moved since its last checkpoint
    (every head with `force`), then keep a copy in the database. Returns what was published."""
    heads = AuditHead.objects.filter(seq__gt=0).order_by("chain")
    if chains is not None:
        heads = heads.filter(chain__in=chains)
    due = []
    for head in heads:
        last = None if force else _last_valid_copy(head.chain)
        if last is None or last.seq < head.seq:
            due.append(_sign_checkpoint(chain=head.chain, seq=head.seq, entry_hash=head.hash))
    publish_checkpoints(due)
    AuditCheckpoint.objects.bulk_create([
        AuditCheckpoint(**{k: cp[k] for k in ("chain", "seq", "hash", "at", "kid", "sig")}) for cp in due
    ])
    for cp in due:
        logger.info("audit checkpoint %s #%s published", cp["chain"], cp["seq"])
    return due


@dataclass
class Checkpoints:
    """Checkpoints read back for verification, with the problems found while reading them."""

    valid: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    source: str = ""

    def anchors(self) -> dict[str, dict[int, dict]]:
        out: dict[str, dict[int, dict]] = {}
        for cp in self.valid:
            out.setdefault(cp["chain"], {}).setdefault(cp["seq"], cp)
        return out


def load_checkpoints(path: str | Path | None = None) -> Checkpoints:
    """The sink file (`path`, default AUDIT_CHECKPOINT_PATH) plus the database copies. A line
    that is not JSON or whose signature does not verify is a problem (someone wrote to the sink
    without the key); two valid checkpoints that disagree about one entry are a problem too."""
    result = Checkpoints()
    checker = macs()
    explicit = bool(path)
    path = Path(path) if path else (Path(settings.AUDIT_CHECKPOINT_PATH) if settings.AUDIT_CHECKPOINT_PATH else None)
    seen: dict[tuple[str, int], dict] = {}

    def take(cp, where: str) -> None:
        problem = checker.checkpoint_problem(cp) if isinstance(cp, dict) else "not a JSON object"
        if not problem and not isinstance(cp.get("chain"), str):
            problem = "malformed checkpoint"
        if problem:
            result.problems.append(f"{where}: {problem}")
            return
        key = (cp["chain"], cp["seq"])
        if key in seen:
            if seen[key]["hash"] != cp["hash"]:
                result.problems.append(f"{where}: two signed checkpoints disagree about {key[0]} #{key[1]}")
            return
        seen[key] = cp
        result.valid.append(cp)

    if path is not None and (explicit or path.exists()):
        result.source = str(path)
        try:
            with path.open(encoding="utf-8") as fh:
                for number, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        cp = json.loads(line)
                    except ValueError:
                        result.problems.append(f"{path.name} line {number}: not JSON")
                        continue
                    take(cp, f"{path.name} line {number}")
        except (OSError, UnicodeDecodeError) as exc:
            result.problems.append(f"{path}: cannot be read ({exc.__class__.__name__})")
    for copy in AuditCheckpoint.objects.order_by("chain", "seq").iterator(chunk_size=2000):
        take(copy.as_dict(), f"database copy of checkpoint {copy.chain} #{copy.seq}")
    return result


# --- verification ------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    bad_seq: int | None = None
    problem: str = ""
    chain: str = ""
    problems: tuple[str, ...] = ()
    chains: int = 0
    checkpoints: int = 0
    checkpoint_source: str = ""


_COLUMNS = ("chain", "seq", "created_at", "action", "actor_type", "actor", "portal", "plan_id", "data", "prev_hash",
            "hash", "key_id")
_SQLITE_SELECT = ("SELECT chain, seq, created_at, action, actor_type, actor, portal, plan_id, data, prev_hash, hash, "
                  "key_id FROM audit_auditentry ORDER BY chain, seq")


def _rows() -> Iterator[tuple[str, tuple]]:
    """Every entry as (chain, walk_chain row), in (chain, seq) order."""
    if connection.vendor == "sqlite":
        yield from _sqlite_rows()
        return
    queryset = AuditEntry.objects.order_by("chain", "seq").values_list(*_COLUMNS).iterator(chunk_size=5000)
    for (chain, seq, created_at, action, actor_type, actor, portal, plan_id, data, prev_hash, entry_hash,
         kid) in queryset:
        yield chain, (seq, created_at.isoformat(), action, actor_type, actor, portal,
                      str(plan_id) if plan_id else None, data, prev_hash, entry_hash, kid)


def _sqlite_rows() -> Iterator[tuple[str, tuple]]:
    """The same rows without the ORM's per-value converters (about a third of the time): SQLite
    keeps a datetime as naive UTC (text, or parsed to a naive datetime by the connection) and a
    UUID as 32 hex digits, so their `isoformat()`/`str()` forms are plain string edits. A value
    stored in any other form yields a different string and fails its HMAC, as it should."""
    loads = json.loads
    with connection.cursor() as cursor:
        cursor.execute(_SQLITE_SELECT)
        while batch := cursor.fetchmany(5000):
            for chain, seq, created_at, action, actor_type, actor, portal, plan, data, prev_hash, entry_hash, kid \
                    in batch:
                # Django's SQLite connection parses declared timestamps into naive (UTC) datetimes.
                at = (created_at.isoformat() if isinstance(created_at, datetime.datetime)
                      else created_at.replace(" ", "T", 1)) + "+00:00"
                if plan:
                    plan = f"{plan[:8]}-{plan[8:12]}-{plan[12:16]}-{plan[16:20]}-{plan[20:]}" if len(plan) == 32 \
                        else plan
                yield chain, (seq, at, action, actor_type, actor, portal, plan or None, loads(data), prev_hash,
                              entry_hash, kid)


def _missing(first: int, last: int) -> str:
    return f"#{first}" if first == last else f"#{first}..#{last}"


def _check_ends(report: ChainReport, head: tuple[int, str] | None, anchors: dict[int, dict]) -> None:
    """After an intact walk: the head must point at the last entry, and no signed checkpoint may
    lie beyond it (a truncated tail with a rewound head, or a wiped chain)."""
    last = report.last_seq
    if report.checked and head is None:
        report.fail(last + 1, f"the chain's head row is missing (entries run to #{last})")
        return
    head_seq, head_hash = head or (0, GENESIS)
    if head_seq > last:
        report.fail(last + 1, f"entries {_missing(last + 1, head_seq)} are missing: deleted (head is #{head_seq})")
        return
    if head_seq != last or head_hash != report.last_hash:
        report.fail(last, f"the head (#{head_seq}) does not point at the last entry #{last}")
        return
    beyond = max(anchors, default=0)
    if beyond > last:
        cp = anchors[beyond]
        what = "the chain was wiped" if last == 0 else "the tail was truncated and the head rewound"
        report.fail(last + 1, f"entries {_missing(last + 1, beyond)} are missing: {what} "
                              f"(signed checkpoint #{beyond} of {cp['at']})")


def audit_verify(*, checkpoints_path: str | Path | None = None) -> VerifyResult:
    """Verify every chain: each entry's keyed hash, its link to the previous one, no gap, the head
    at the last entry, and agreement with every signed checkpoint (from the sink file and the
    database copies). Names the first bad entry (or the missing range) of each bad chain."""
    checker = macs()
    loaded = load_checkpoints(checkpoints_path)
    anchors = loaded.anchors()
    heads = {h.chain: (h.seq, h.hash) for h in AuditHead.objects.all()}
    reports: dict[str, ChainReport] = {}
    for chain, group in itertools.groupby(_rows(), key=lambda r: r[0]):
        report = reports[chain] = ChainReport(chain)
        chain_anchors = anchors.get(chain, {})
        walk_chain(report, (row for _chain, row in group), checker,
                   checkpoints={seq: cp["hash"] for seq, cp in chain_anchors.items()})
        if not report.problems:
            _check_ends(report, heads.get(chain), chain_anchors)
    for chain in sorted((set(heads) | set(anchors)) - set(reports)):
        report = reports[chain] = ChainReport(chain)
        _check_ends(report, heads.get(chain), anchors.get(chain, {}))
    problems = [str(p) for chain in sorted(reports) for p in reports[chain].problems]
    problems += [f"checkpoints: {text}" for text in loaded.problems]
    checked = sum(r.checked for r in reports.values())
    first = next((p for chain in sorted(reports) for p in reports[chain].problems), None)
    return VerifyResult(
        ok=not problems, checked=checked, bad_seq=first.seq if first else None,
        problem=first.text if first else (loaded.problems[0] if loaded.problems else ""),
        chain=first.chain if first else "", problems=tuple(problems), chains=len(reports),
        checkpoints=len(loaded.valid), checkpoint_source=loaded.source,
    )


# --- export ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportPlan:
    chain: str
    start: int
    stop: int
    fmt: str
    checkpoint: dict


def audit_chains() -> list[str]:
    return list(AuditHead.objects.filter(seq__gt=0).order_by("chain").values_list("chain", flat=True))


def audit_export_prepare(*, chain: str, start: int, stop: int | None, fmt: str, actor=None) -> ExportPlan:
    """Check the range, find the earliest signed checkpoint at or after its end (publishing one
    now if none covers it yet) and audit the export itself. `stop` None means the head."""
    if fmt not in ("jsonl", "csv"):
        raise InvalidRequest("The format is jsonl or csv.", field="format")
    head = AuditHead.objects.filter(chain=chain).first()
    if head is None or head.seq == 0:
        raise NotFound(f"There is no audit chain {chain!r}.", field="chain")
    stop = head.seq if stop is None else stop
    if start < 1:
        raise InvalidRequest("The range starts at entry 1 or later.", field="from")
    if stop < start or stop > head.seq:
        raise InvalidRequest(f"The range ends between #{start} and the head #{head.seq}.", field="to")
    covering = [cp for seq, cp in load_checkpoints().anchors().get(chain, {}).items() if seq >= stop]
    checkpoint = min(covering, key=lambda cp: cp["seq"]) if covering else None
    if checkpoint is None:
        checkpoint = audit_checkpoint(force=True, chains=[chain])[0]
    audit_record(action=registry.AUDIT_EXPORTED, actor=actor, data={
        "chain": chain, "from": start, "to": stop, "format": fmt, "checkpoint": checkpoint["seq"]})
    return ExportPlan(chain, start, stop, fmt, checkpoint)


def _export_records(plan: ExportPlan) -> Iterator[dict]:
    yield {"record": "header", "type": EXPORT_TYPE, "v": 1, "chain": plan.chain, "from": plan.start,
           "to": plan.stop, "through": plan.checkpoint["seq"], "exported_at": timezone.now().isoformat()}
    entries = AuditEntry.objects.filter(chain=plan.chain, seq__gte=plan.start, seq__lte=plan.checkpoint["seq"])
    for e in entries.order_by("seq").iterator(chunk_size=2000):
        yield {"record": "entry", "chain": e.chain, "seq": e.seq, "created_at": e.created_at.isoformat(),
               "action": e.action, "actor_type": e.actor_type, "actor": e.actor, "portal": e.portal,
               "plan_id": str(e.plan_id) if e.plan_id else None, "data": e.data, "prev_hash": e.prev_hash,
               "hash": e.hash, "key_id": e.key_id}
    yield {"record": "checkpoint", "checkpoint": plan.checkpoint}


def audit_export_lines(plan: ExportPlan) -> Iterator[str]:
    """The export as text chunks: JSONL (one record a line) or CSV (a `record` column; the header
    and the checkpoint as JSON in the `data` column). Entries run from `start` to the checkpoint's
    entry, so the auditor can link the range to the signed checkpoint."""
    if plan.fmt == "jsonl":
        for record in _export_records(plan):
            yield json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in _export_records(plan):
        kind = record["record"]
        if kind == "entry":
            row = {**record, "data": canonical_json(record["data"]), "plan_id": record["plan_id"] or ""}
        else:
            body = record["checkpoint"] if kind == "checkpoint" else {k: v for k, v in record.items() if k != "record"}
            row = {"record": kind, "chain": plan.chain, "data": json.dumps(body, sort_keys=True)}
        writer.writerow(row)
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()

