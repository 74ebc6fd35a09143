"""Export files: where they live, how rows become JSON lines or CSV, and appending from the
length the export last saved (bytes written after it belong to a batch whose progress was never
saved, so they are cut off before the batch is fetched again)."""

import csv
import io
import json
import os
from pathlib import Path

from django.conf import settings


def exports_dir() -> Path:
    path = Path(settings.EXPORTS_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


def export_path(export) -> Path:
    return exports_dir() / export.file_name


def columns_for(select: list, first_row: dict | None, drop_id: bool) -> list[str]:
    """CSV columns: the select when it names fields, else the first row's keys."""
    named = [s for s in select if "*" not in str(s)]
    if select and len(named) == len(select):
        cols = list(dict.fromkeys(str(s) for s in select))
    else:
        cols = list((first_row or {}).keys())
    if drop_id:
        cols = [c for c in cols if c != "ID"]
    return cols


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def encode(rows: list, *, fmt: str, columns: list[str], drop_id: bool, header: bool) -> bytes:
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        if header:
            writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row.get(c)) if isinstance(row, dict) else "" for c in columns])
        return out.getvalue().encode("utf-8")
    lines = []
    for row in rows:
        if drop_id and isinstance(row, dict):
            row = {k: v for k, v in row.items() if k != "ID"}
        lines.append(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


def append(path: Path, *, at: int, data: bytes) -> int:
    """Write `data` at byte `at` (cutting off anything after it), durably; the new length."""
    mode = "r+b" if path.exists() else "w+b"
    with open(path, mode) as handle:
        handle.truncate(at)
        handle.seek(at)
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return at + len(data)


def remove(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
