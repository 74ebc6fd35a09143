"""Write the embedded default's `.env` once, so every command works from any shell.

`make run` calls `python -m controlplane.envfile .env` before anything else. The first time it
writes DEBUG, DATA_DIR, the sandbox address and freshly generated keys (SECRET_KEY,
FIELD_ENCRYPTION_KEYS, AUDIT_KEYS) to a file only its owner can read; later runs keep the file
as it is, so the keys that encrypted the demo's secrets stay the same. Standard library only:
it runs before Django's settings can load.
"""

import base64
import hashlib
import os
import secrets
import sys
from pathlib import Path

# What DEBUG derived its Fernet key from before `.env` existed: kept as a decrypt-only second key
# when a database from that time is already there, so its stored secrets still open.
LEGACY_DEBUG_SECRET_KEY = "insecure-dev-only-secret-key-change-me"


def embedded_default(*, data_dir: Path, sandbox_base_url: str) -> dict[str, str]:
    fernet_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    if (data_dir / "controlplane.sqlite3").exists():
        legacy = base64.urlsafe_b64encode(hashlib.sha256(LEGACY_DEBUG_SECRET_KEY.encode()).digest()).decode()
        fernet_key = f"{fernet_key},{legacy}"
    audit_key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    return {
        "DEBUG": "1",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEYS": fernet_key,
        "AUDIT_KEYS": f"k1:{audit_key}",
        "DATA_DIR": str(data_dir),
        "SANDBOX_BASE_URL": sandbox_base_url,
        "SITE_URL": sandbox_base_url,  # the same web process serves the plane and the sandbox
    }


def write_once(path: Path, values: dict[str, str]) -> bool:
    """Create `path` (mode 0600) with `values`; False, and nothing written, if it exists."""
    lines = ["# Written once by `make run` for the embedded default. Keep it: it holds the keys that",
             "# encrypt this checkout's stored secrets. Git ignores it.",
             *(f"{key}={value}" for key, value in values.items())]
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return True


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m controlplane.envfile PATH", file=sys.stderr)
        return 2
    path = Path(argv[1]).resolve()
    data_dir = Path(os.environ.get("DATA_DIR") or path.parent / "var").resolve()
    sandbox = os.environ.get("SANDBOX_BASE_URL") or "http://127.0.0.1:8000"
    if write_once(path, embedded_default(data_dir=data_dir, sandbox_base_url=sandbox)):
        print(f"Wrote {path} (mode 0600) with the embedded default's settings and new keys.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
