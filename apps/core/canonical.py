import hashlib
import json


def canonical_json(value) -> str:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8 kept. Used for every hash."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_hex(value) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()
