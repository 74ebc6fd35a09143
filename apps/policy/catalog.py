"""The documented-method catalog (`apps/policy/data/*.csv`), loaded once per process.

`methods.csv` lists every documented method (REST 3.0-only methods included, with the same row as
in `methods_rest3.csv`); `methods_rest3.csv` lists the methods documented for the `/rest/api/`
address. Six names have both a v2 page and a 3.0 page (`tasks.task.add/get/list/update/delete`,
`tasks.task.result.list`); their `methods.csv` row points at the v2 page.

`MethodInfo.v2` is therefore *"has a v2 page"*: the name is in `methods.csv` with a row that is not
simply the copy of its REST 3.0 row. `MethodInfo.rest3` is *"in methods_rest3.csv"*. The scope,
risk and page come from the `methods.csv` row (the v2 page where there is one).

Lookups are case-insensitive on the normalised name (`apps.policy.normalize`).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType

from .errors import PolicyInputError
from .normalize import normalize_method

DATA_DIR = Path(__file__).resolve().parent / "data"
V2_FILE = DATA_DIR / "methods.csv"
REST3_FILE = DATA_DIR / "methods_rest3.csv"
HEADER = ["method", "scope", "risk", "doc_path"]
RISKS = ("read", "write", "destructive")

_NAME = re.compile(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*")


@dataclass(frozen=True)
class MethodInfo:
    name: str  # the documentation's spelling, e.g. "disk.file.getExternalLink"
    scope: str  # as printed on the page; several joined by ";"; "" for a few REST 3.0 service methods
    risk: str  # read | write | destructive
    doc_path: str  # page path inside github:bitrix24/b24restdocs
    rest3: bool  # documented for REST 3.0 (/rest/api/)
    v2: bool  # documented for REST v2 (/rest/)

    @property
    def normalized(self) -> str:
        return self.name.lower()

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(part for part in self.scope.split(";") if part)


@dataclass(frozen=True)
class _Row:
    name: str
    scope: str
    risk: str
    doc_path: str


def _read_rows(path: Path) -> list[_Row]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header != HEADER:
            raise ValueError(f"{path.name}: expected header {HEADER}, got {header}")
        rows = []
        for line_no, record in enumerate(reader, start=2):
            if not record:
                continue
            if len(record) != 4:
                raise ValueError(f"{path.name}:{line_no}: expected 4 columns, got {len(record)}")
            name, scope, risk, doc_path = (field.strip() for field in record)
            if not _NAME.fullmatch(name):
                raise ValueError(f"{path.name}:{line_no}: bad method name {name!r}")
            if risk not in RISKS:
                raise ValueError(f"{path.name}:{line_no}: bad risk {risk!r}")
            rows.append(_Row(name, scope, risk, doc_path))
    return rows


@lru_cache(maxsize=1)
def _catalog() -> Mapping[str, MethodInfo]:
    v2_rows = _read_rows(V2_FILE)
    rest3_rows = {row.name.lower(): row for row in _read_rows(REST3_FILE)}
    entries: dict[str, MethodInfo] = {}
    for row in v2_rows:
        key = row.name.lower()
        if key in entries:
            raise ValueError(f"{V2_FILE.name}: duplicate method {row.name!r} (names are case-insensitive)")
        r3 = rest3_rows.get(key)
        entries[key] = MethodInfo(
            name=row.name,
            scope=row.scope,
            risk=row.risk,
            doc_path=row.doc_path,
            rest3=r3 is not None,
            v2=r3 is None or r3.doc_path != row.doc_path,
        )
    for key, row in rest3_rows.items():
        if key not in entries:  # not the case in the shipped data; kept for a future split file
            entries[key] = MethodInfo(row.name, row.scope, row.risk, row.doc_path, rest3=True, v2=False)
    return MappingProxyType(dict(sorted(entries.items())))


def lookup(name: str) -> MethodInfo | None:
    """The catalog entry for `name` (any spelling `normalize_method` accepts), or None."""
    try:
        key = normalize_method(name)
    except PolicyInputError:
        return None
    return _catalog().get(key)


def all_methods() -> tuple[MethodInfo, ...]:
    """Every documented method, sorted by normalised name."""
    return tuple(_catalog().values())


def is_known(name: str) -> bool:
    return lookup(name) is not None
