"""REST 3.0 `Idempotency-Key` (FACTS §2): 1-255 printable ASCII characters, scoped to the
app/webhook + user + method; a successful answer is stored for 24 h and a replay returns it with
`Idempotent-Replayed: true`; the same key with another body answers 422; a malformed key 400.
Failed calls are not stored, and two concurrent first calls with one key may both run."""

import hashlib
import json
import re

from django.db import IntegrityError

from . import clock
from .errors import SandboxError, v3_error
from .models import SandboxIdempotencyKey, SandboxPortal
from .tx import portal_atomic

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
LIFETIME = 24 * 3600
_KEY_RE = re.compile(r"[\x20-\x7e]{1,255}")


def check_key(key: str) -> None:
    if not _KEY_RE.fullmatch(key):
        raise v3_error("INVALIDIDEMPOTENCYKEYEXCEPTION",
                       "The Idempotency-Key header must be 1-255 printable ASCII characters")


def body_hash(params) -> str:
    canonical = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def stored_answer(*, portal: SandboxPortal, scope: str, key: str, digest: str) -> tuple[int, dict] | None:
    """The stored (status, body) for this key, None if there is none; 422 if the body differs."""
    now = clock.now()
    SandboxIdempotencyKey.objects.filter(portal=portal, created_at__lte=now - LIFETIME).delete()
    row = SandboxIdempotencyKey.objects.filter(portal=portal, scope=scope, key=key).first()
    if row is None:
        return None
    if row.body_hash != digest:
        raise SandboxError("BITRIX_REST_V3_EXCEPTION_IDEMPOTENCYKEYREUSEDEXCEPTION",
                           "The Idempotency-Key was already used with another request body", status=422)
    return row.status, row.body


def store_answer(*, portal: SandboxPortal, scope: str, key: str, digest: str, status: int, body) -> None:
    try:
        with portal_atomic():
            SandboxIdempotencyKey.objects.create(portal=portal, scope=scope, key=key, body_hash=digest,
                                                 status=status, body=body, created_at=clock.now())
    except IntegrityError:
        pass  # a concurrent call with the same key stored first; both ran (documented)
