"""The audit chain's cryptography and its verifier, in the standard library only.

This one module is both what the control plane uses to sign and verify its audit chains and a
standalone verifier for an auditor with no database access: give it an export written by
`manage.py audit_export` (or the admin's export page) and the audit key(s):

    python -m apps.audit.offline_verify export.jsonl --key-file audit-keys.txt
    python offline_verify.py export.csv --key-file audit-keys.txt      # a copy of this file

The key file holds the same `kid:base64key` items as the `AUDIT_KEYS` setting (comma- or
newline-separated). Exit status 0 means every entry in the export is authentic, linked to the
one before it without a gap, and the export ends at a checkpoint whose signature is valid; 1 means
tampering (the first bad entry is named); 2 means the file or the keys could not be read.

Chain rules (the contract between writer, verifier and this script):
- an entry's `hash` = HMAC-SHA256(key[key_id], canonical JSON of {chain, seq, prev, at, action,
  actor_type, actor, portal, plan, data, kid}); `prev` is the previous entry's hash (64 zeros for
  seq 1), `seq` counts from 1 without gaps within a chain;
- a checkpoint = {chain, seq, hash, at, kid} signed the same way under a "checkpoint" domain tag,
  so an entry's hash can never pass as a checkpoint signature or the other way round.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import csv
import hashlib
import hmac
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

GENESIS = "0" * 64
CHECKPOINT_TYPE = "audit-checkpoint"
EXPORT_TYPE = "audit-export"
CSV_COLUMNS = ("record", "chain", "seq", "created_at", "action", "actor_type", "actor", "portal", "plan_id",
               "data", "prev_hash", "hash", "key_id")
_KID = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
MIN_KEY_BYTES = 16


class KeyError_(ValueError):
    """A malformed key list (named so it does not shadow the builtin KeyError)."""


def canonical_json(value) -> str:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8 kept (same as apps.core.canonical)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def parse_keys(items: Iterable[str]) -> dict[str, bytes]:
    """`kid:base64key` items -> {kid: key}, in order (the first one signs). Raises KeyError_."""
    keys: dict[str, bytes] = {}
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        kid, sep, b64 = item.partition(":")
        if not sep or not _KID.match(kid):
            raise KeyError_("each audit key is `kid:base64key`, kid of 1-32 letters, digits, `_.-`")
        if kid in keys:
            raise KeyError_(f"audit key id {kid!r} appears twice")
        try:
            key = base64.b64decode(b64.strip() + "=" * (-len(b64.strip()) % 4), altchars=b"-_", validate=False)
        except (binascii.Error, ValueError):
            raise KeyError_(f"audit key {kid!r} is not base64") from None
        if len(key) < MIN_KEY_BYTES:
            raise KeyError_(f"audit key {kid!r} is shorter than {MIN_KEY_BYTES} bytes")
        keys[kid] = key
    if not keys:
        raise KeyError_("no audit key given")
    return keys


def read_key_file(path: str) -> dict[str, bytes]:
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    return parse_keys(re.split(r"[,\s]+", text))


def entry_message(*, chain: str, seq: int, prev_hash: str, created_at: str, action: str, actor_type: str,
                  actor: str, portal: str, plan_id: str | None, data, key_id: str) -> bytes:
    return canonical_json({
        "chain": chain, "seq": seq, "prev": prev_hash, "at": created_at, "action": action,
        "actor_type": actor_type, "actor": actor, "portal": portal, "plan": plan_id, "data": data, "kid": key_id,
    }).encode("utf-8")


class Macs:
    """HMAC-SHA256 per key id, with the keyed state precomputed (about half the cost per entry)."""

    def __init__(self, keys: dict[str, bytes]):
        self._base = {kid: hmac.new(key, digestmod=hashlib.sha256) for kid, key in keys.items()}

    def __contains__(self, kid: str) -> bool:
        return kid in self._base

    def hexdigest(self, kid: str, message: bytes) -> str:
        mac = self._base[kid].copy()
        mac.update(message)
        return mac.hexdigest()

    def entry_hash(self, **fields) -> str:
        return self.hexdigest(fields["key_id"], entry_message(**fields))

    def checkpoint_signature(self, checkpoint: dict) -> str:
        body = {k: checkpoint[k] for k in ("chain", "seq", "hash", "at", "kid")}
        return self.hexdigest(checkpoint["kid"], b"checkpoint\n" + canonical_json(body).encode("utf-8"))

    def checkpoint_problem(self, checkpoint: dict) -> str:
        """'' when the checkpoint is well-formed and its signature is valid, else why not."""
        try:
            kid, seq, sig = checkpoint["kid"], checkpoint["seq"], checkpoint["sig"]
            if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0 or not isinstance(sig, str):
                return "malformed checkpoint"
            if kid not in self:
                return f"checkpoint signed with unknown key id {kid!r}"
            expected = self.checkpoint_signature(checkpoint)
        except (KeyError, TypeError, ValueError):
            return "malformed checkpoint"
        if not hmac.compare_digest(expected, sig):
            return "checkpoint signature is invalid (forged or altered)"
        return ""


@dataclass
class Problem:
    chain: str
    seq: int | None
    text: str

    def __str__(self):
        where = f"entry #{self.seq}" if self.seq is not None else "chain"
        return f"{self.chain}: {where}: {self.text}"


@dataclass
class ChainReport:
    chain: str
    checked: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS
    problems: list[Problem] = field(default_factory=list)

    def fail(self, seq: int | None, text: str) -> None:
        self.problems.append(Problem(self.chain, seq, text))


def walk_chain(report: ChainReport, rows: Iterable[tuple], macs: Macs, *, first_seq: int = 1,
               first_prev: str | None = GENESIS, checkpoints: dict[int, str] | None = None) -> None:
    """Verify one chain's rows in seq order; stops at the first problem.

    A row is (seq, created_at, action, actor_type, actor, portal, plan_id, data, prev_hash, hash,
    key_id) with created_at the exact string that was signed. `first_prev` None accepts any
    prev_hash on the first row (an export that starts mid-chain: that row's HMAC still binds it).
    `checkpoints` maps seq -> the hash a signed checkpoint recorded for it."""
    expected_seq, prev, chain = first_seq, first_prev, report.chain
    checkpoints = checkpoints or {}
    for seq, created_at, action, actor_type, actor, portal, plan_id, data, prev_hash, entry_hash, kid in rows:
        if seq != expected_seq:
            if seq > expected_seq:
                missing = f"#{expected_seq}" if seq == expected_seq + 1 else f"#{expected_seq}..#{seq - 1}"
                report.fail(expected_seq, f"entries {missing} are missing (deleted)")
            else:
                report.fail(seq, f"appears again or out of order after #{expected_seq - 1}")
            return
        if prev is not None and prev_hash != prev:
            report.fail(seq, "does not link to the previous entry (reordered, inserted or edited)")
            return
        if kid not in macs:
            report.fail(seq, f"signed with unknown key id {kid!r} (forged, or its key is not configured)")
            return
        computed = macs.entry_hash(chain=chain, seq=seq, prev_hash=prev_hash, created_at=created_at, action=action,
                                   actor_type=actor_type, actor=actor, portal=portal, plan_id=plan_id, data=data,
                                   key_id=kid)
        if computed != entry_hash:
            report.fail(seq, "content does not match its keyed hash (edited, or forged without the key)")
            return
        anchored = checkpoints.get(seq)
        if anchored is not None and anchored != entry_hash:
            report.fail(seq, "differs from the signed checkpoint for this entry (the chain was rewritten)")
            return
        prev, expected_seq = entry_hash, expected_seq + 1
        report.checked += 1
        report.last_seq, report.last_hash = seq, entry_hash


# --- exports --------------------------------------------------------------------------------


@dataclass
class Export:
    header: dict
    entries: list[dict]
    checkpoint: dict | None


def _entry_from_csv(row: dict) -> dict:
    out = {k: row[k] for k in CSV_COLUMNS if k != "record"}
    out["seq"] = int(row["seq"])
    out["plan_id"] = row["plan_id"] or None
    out["data"] = json.loads(row["data"])
    return out


def read_export(path: str) -> Export:
    """Parse a JSONL or CSV export (told apart by the first character). Raises ValueError."""
    header, checkpoint, entries = None, None, []
    with open(path, encoding="utf-8", newline="") as fh:
        first = fh.read(1)
        fh.seek(0)
        if first == "{":
            records = (json.loads(line) for line in fh if line.strip())
            for record in records:
                kind = record.get("record")
                if kind == "header":
                    header = record
                elif kind == "entry":
                    entries.append(record)
                elif kind == "checkpoint":
                    checkpoint = record["checkpoint"]
                else:
                    raise ValueError(f"unknown record {kind!r}")
        else:
            for row in csv.DictReader(fh):
                kind = row.get("record")
                if kind == "header":
                    header = json.loads(row["data"])
                elif kind == "entry":
                    entries.append(_entry_from_csv(row))
                elif kind == "checkpoint":
                    checkpoint = json.loads(row["data"])
                else:
                    raise ValueError(f"unknown record {kind!r}")
    if header is None or header.get("type") != EXPORT_TYPE:
        raise ValueError("not an audit export (no header record)")
    return Export(header, entries, checkpoint)


def entry_row(entry: dict) -> tuple:
    return (entry["seq"], entry["created_at"], entry["action"], entry["actor_type"], entry["actor"],
            entry["portal"], entry["plan_id"], entry["data"], entry["prev_hash"], entry["hash"], entry["key_id"])


def verify_export(export: Export, macs: Macs) -> tuple[ChainReport, list[str]]:
    """(report, problems as text). The export's entries must run from its `from` to at least its
    `to` and on to the checkpoint's seq, which must carry a valid signature and the last hash."""
    header = export.header
    chain = header.get("chain", "")
    report = ChainReport(chain)
    start, stop = header.get("from"), header.get("to")
    if not isinstance(start, int) or not isinstance(stop, int) or start < 1 or stop < start:
        report.fail(None, "the export header has no valid range")
        return report, [str(p) for p in report.problems]
    if any(e.get("chain") != chain for e in export.entries):
        report.fail(None, "the export mixes entries of another chain")
        return report, [str(p) for p in report.problems]
    checkpoint = export.checkpoint
    anchors: dict[int, str] = {}
    if checkpoint is None:
        report.fail(None, "the export carries no checkpoint: its end cannot be anchored")
    else:
        problem = macs.checkpoint_problem(checkpoint)
        if problem:
            report.fail(None, problem)
        elif checkpoint["chain"] != chain:
            report.fail(None, "the checkpoint belongs to another chain")
        elif checkpoint["seq"] < stop:
            report.fail(None, f"the checkpoint (#{checkpoint['seq']}) does not cover the range's end #{stop}")
        else:
            anchors[checkpoint["seq"]] = checkpoint["hash"]
    if report.problems:
        return report, [str(p) for p in report.problems]
    walk_chain(report, (entry_row(e) for e in export.entries), macs, first_seq=start,
               first_prev=GENESIS if start == 1 else None, checkpoints=anchors)
    if not report.problems:
        end = checkpoint["seq"]
        if report.last_seq < end:
            missing = report.last_seq + 1
            text = f"#{missing}" if missing == end else f"#{missing}..#{end}"
            report.fail(missing, f"entries {text} are missing: the export stops before its checkpoint")
    return report, [str(p) for p in report.problems]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify an audit export offline (standard library only).")
    parser.add_argument("export", help="the .jsonl or .csv file written by audit_export")
    parser.add_argument("--key-file", required=True, help="file with kid:base64key items (as AUDIT_KEYS)")
    args = parser.parse_args(argv)
    try:
        macs = Macs(read_key_file(args.key_file))
        export = read_export(args.export)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        print(f"cannot read: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 2
    try:
        report, problems = verify_export(export, macs)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a record with missing or odd fields
        print(f"TAMPERED malformed record in the export ({exc.__class__.__name__}: {exc})")
        return 1
    if problems:
        for text in problems:
            print(f"TAMPERED {text}")
        return 1
    header = export.header
    print(f"OK chain {report.chain}: entries #{header['from']}..#{header['to']} verified "
          f"({report.checked} entries up to checkpoint #{export.checkpoint['seq']} of {export.checkpoint['at']}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
