#!/usr/bin/env python
"""Benchmark of `audit_verify` (apps.audit.services) on SQLite.

- creates a throwaway SQLite database in a temporary DATA_DIR and migrates it;
- writes N audit entries (default 10^6) spread over 20 portal chains and the system chain, with
  the product's own HMAC chain rules (`apps.audit.offline_verify.Macs`), inserted in bulk
  (executemany), then publishes one signed checkpoint per chain (`audit_checkpoint`);
- times `audit_verify()` over all of them and prints entries/s;
- then tampers with a copy of the rows in a few ways (edit, forged append, truncation with a
  rewound head) and prints what verification says about each. It asserts nothing: the figures
  are for people.

Usage: .venv/bin/python bench/audit_verify_bench.py [--entries 1000000] [--chains 20] [--keep]
"""

import argparse
import base64
import datetime
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def setup(data_dir: Path) -> None:
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "controlplane.settings",
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEYS": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "AUDIT_KEYS": "b1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": f"sqlite:///{data_dir / 'bench.sqlite3'}",
        "AUDIT_CHECKPOINT_PATH": str(data_dir / "checkpoints.jsonl"),
        "CELERY_BROKER_URL": "memory://",
        "ALLOWED_HOSTS": "*",
    })
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def populate(total: int, chains: int) -> float:
    from django.db import connection, transaction

    from apps.audit.keys import macs, signing_kid
    from apps.audit.offline_verify import GENESIS

    mac, kid = macs(), signing_kid()
    names = [f"portal:p{i:02d}" for i in range(chains)] + ["system"]
    heads = {name: (0, GENESIS) for name in names}
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    plan_ids = [uuid.uuid4() for _ in range(1000)]
    sql = ("INSERT INTO audit_auditentry (chain, seq, created_at, action, actor_type, actor, portal, plan_id, data, "
           "prev_hash, hash, key_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")
    began = time.perf_counter()
    batch = []
    with transaction.atomic(), connection.cursor() as cursor:
        for n in range(total):
            chain = names[n % len(names)]
            portal = chain.removeprefix("portal:") if chain != "system" else ""
            seq, prev = heads[chain]
            seq += 1
            at = start + datetime.timedelta(microseconds=n * 1_234_567)
            plan = plan_ids[n % len(plan_ids)] if portal else None
            data = ({"from": "pending_approval", "to": "approved", "approvals": 2} if n % 3 else
                    {"risk": "write", "methods": ["crm.lead.add", "crm.deal.update"], "outcome": "needs_approval",
                     "content_hash": "ab" * 32})
            digest = mac.entry_hash(chain=chain, seq=seq, prev_hash=prev, created_at=at.isoformat(),
                                    action="plan.transition", actor_type="agent", actor="agent-a", portal=portal,
                                    plan_id=str(plan) if plan else None, data=data, key_id=kid)
            batch.append((chain, seq, connection.ops.adapt_datetimefield_value(at), "plan.transition", "agent",
                          "agent-a", portal, plan.hex if plan else None, json.dumps(data), prev, digest, kid))
            heads[chain] = (seq, digest)
            if len(batch) >= 20000:
                cursor.executemany(sql, batch)
                batch.clear()
        if batch:
            cursor.executemany(sql, batch)
        cursor.executemany("INSERT INTO audit_audithead (chain, seq, hash) VALUES (%s, %s, %s)",
                           [(name, seq, digest) for name, (seq, digest) in heads.items() if seq])
    return time.perf_counter() - began


def timed_verify():
    from apps.audit.services import audit_verify

    began, cpu = time.perf_counter(), time.process_time()
    result = audit_verify()
    return result, time.perf_counter() - began, time.process_time() - cpu


def tamper_round(label: str, action) -> str:
    from django.db import transaction

    class Undo(Exception):
        pass

    outcome = ""
    try:
        with transaction.atomic():
            action()
            result, seconds, _cpu = timed_verify()
            first = result.problems[0] if result.problems else "-"
            outcome = f"{label:<32} detected={not result.ok}  first problem: {first}  ({seconds:.1f} s)"
            raise Undo
    except Undo:
        pass
    return outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--chains", type=int, default=20, help="portal chains (plus the system chain)")
    parser.add_argument("--no-tamper", action="store_true", help="skip the tamper rounds")
    parser.add_argument("--keep", action="store_true", help="keep the temporary DATA_DIR")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    import logging

    logging.disable(logging.INFO)  # one "checkpoint published" line per chain is noise here
    try:
        setup(data_dir)
        from apps.audit.models import AuditEntry, AuditHead
        from apps.audit.services import audit_checkpoint

        seconds = populate(args.entries, args.chains)
        print(f"populated {args.entries:,} entries in {args.chains + 1} chains in {seconds:.1f} s "
              f"({args.entries / seconds:,.0f} entries/s, HMAC + executemany)")
        checkpoints = audit_checkpoint()
        print(f"published {len(checkpoints)} signed checkpoints to {os.environ['AUDIT_CHECKPOINT_PATH']}")
        result, seconds, cpu = timed_verify()
        print(f"audit_verify: ok={result.ok} checked={result.checked:,} chains={result.chains} "
              f"checkpoints={result.checkpoints} in {seconds:.1f} s wall ({cpu:.1f} s CPU) -> "
              f"{result.checked / seconds:,.0f} entries/s wall, {result.checked / cpu:,.0f} entries/s CPU")
        if args.no_tamper:
            return 0
        from apps.audit.offline_verify import GENESIS

        chain = "portal:p00"
        head = AuditHead.objects.get(chain=chain)
        middle = head.seq // 2

        def edit():
            AuditEntry.objects.filter(chain=chain, seq=middle).update(data={"edited": True})

        def forge():
            last = AuditEntry.objects.get(chain=chain, seq=head.seq)
            AuditEntry.objects.create(chain=chain, seq=head.seq + 1, created_at=last.created_at,
                                      action="plan.transition", actor_type="agent", actor="mallory", portal="p00",
                                      data={}, prev_hash=last.hash, hash="f" * 64, key_id=last.key_id)
            AuditHead.objects.filter(chain=chain).update(seq=head.seq + 1, hash="f" * 64)

        def truncate():
            AuditEntry.objects.filter(chain=chain, seq__gt=middle).delete()
            kept = AuditEntry.objects.get(chain=chain, seq=middle)
            AuditHead.objects.filter(chain=chain).update(seq=middle, hash=kept.hash)

        def wipe():
            AuditEntry.objects.filter(chain=chain).delete()
            AuditHead.objects.filter(chain=chain).update(seq=0, hash=GENESIS)

        for label, action in [("edit one entry in the middle", edit), ("forged append without the key", forge),
                              ("truncate half, rewind the head", truncate), ("wipe one chain (entries, head)", wipe)]:
            print(tamper_round(label, action))
        return 0
    finally:
        if args.keep:
            print(f"kept {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
