"""Records of the simulated portal (leads, deals, contacts, tasks): create, read, update,
delete and the list query (filter, order, 50-row pages) the list methods share."""

from dataclasses import dataclass

from .models import SandboxPortal, SandboxRecord, SandboxSequence
from .tx import portal_atomic

PAGE_SIZE = 50
MAX_ID = 2**63 - 1  # a BIGINT; larger numbers are clamped so comparisons keep their meaning
MAX_OFFSET = 10**15

OPS = ("=", "!=", ">", ">=", "<", "<=", "in", "not_in", "like", "not_like")


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: object


def record_create(*, portal: SandboxPortal, entity: str, build) -> tuple[int, dict]:
    """Allocate the next ID and store `build(new_id)` (a dict) under it, atomically."""
    with portal_atomic():
        # The portal row lock serialises ID allocation per portal, on SQLite and PostgreSQL.
        SandboxPortal.objects.select_for_update().filter(pk=portal.pk).first()
        seq, _ = SandboxSequence.objects.select_for_update().get_or_create(portal=portal, entity=entity)
        seq.last_id += 1
        seq.save(update_fields=["last_id"])
        data = build(seq.last_id)
        SandboxRecord.objects.create(portal=portal, entity=entity, record_id=seq.last_id, data=data)
    return seq.last_id, data


def next_ids(*, portal: SandboxPortal, entity: str, count: int) -> list[int]:
    """Allocate `count` IDs from the portal's sequence `entity` (e.g. multi-field items)."""
    if count <= 0:
        return []
    with portal_atomic():
        seq, _ = SandboxSequence.objects.select_for_update().get_or_create(portal=portal, entity=entity)
        first = seq.last_id + 1
        seq.last_id += count
        seq.save(update_fields=["last_id"])
    return list(range(first, first + count))


def record_get(*, portal: SandboxPortal, entity: str, record_id: int) -> dict | None:
    row = SandboxRecord.objects.filter(portal=portal, entity=entity, record_id=record_id).first()
    return row.data if row else None


def record_update(*, portal: SandboxPortal, entity: str, record_id: int, apply) -> dict | None:
    """Replace the record's data with `apply(old_data)`; None if there is no such record."""
    with portal_atomic():
        row = (
            SandboxRecord.objects.select_for_update()
            .filter(portal=portal, entity=entity, record_id=record_id)
            .first()
        )
        if row is None:
            return None
        row.data = apply(dict(row.data))
        row.save(update_fields=["data"])
        return row.data


def record_delete(*, portal: SandboxPortal, entity: str, record_id: int) -> bool:
    deleted, _ = SandboxRecord.objects.filter(portal=portal, entity=entity, record_id=record_id).delete()
    return deleted > 0


def record_query(
    *,
    portal: SandboxPortal,
    entity: str,
    conditions: list[Condition],
    order: list[tuple[str, bool]],
    offset: int,
    limit: int = PAGE_SIZE,
    count: bool = True,
    predicate=None,
) -> tuple[list[dict], int | None]:
    """One page of records matching every condition (and `predicate(row)`, for OR groups), in
    `order` ((field, descending) pairs, ID ascending by default), and the total count (None when
    `count` is False)."""
    offset = max(0, min(offset, MAX_OFFSET))
    qs = SandboxRecord.objects.filter(portal=portal, entity=entity)
    python_conditions = []
    for cond in conditions:
        if cond.field == "ID" and cond.op in ("=", "!=", ">", ">=", "<", "<=", "in", "not_in"):
            qs = _id_filter(qs, cond)
            if qs is None:
                return [], (0 if count else None)
        else:
            python_conditions.append(cond)
    order = order or [("ID", False)]
    if predicate is None and not python_conditions and all(field == "ID" for field, _ in order):
        qs = qs.order_by("-record_id" if order[0][1] else "record_id")
        total = qs.count() if count else None
        return [row.data for row in qs[offset : offset + limit]], total
    rows = [row.data for row in qs.order_by("record_id")]
    rows = [r for r in rows if all(_matches(r, c) for c in python_conditions) and (predicate is None or predicate(r))]
    for field, descending in reversed(order):
        rows.sort(key=lambda r, f=field: _sort_key(r.get(f)), reverse=descending)
    total = len(rows) if count else None
    return rows[offset : offset + limit], total


def _id_filter(qs, cond: Condition):
    if cond.op in ("in", "not_in"):
        values = cond.value if isinstance(cond.value, list) else [cond.value]
        ids = [v for v in (_as_int(x) for x in values) if v is not None]
        return qs.filter(record_id__in=ids) if cond.op == "in" else qs.exclude(record_id__in=ids)
    value = _as_int(cond.value)
    if value is None:
        # A non-numeric ID matches nothing (a real portal casts it to 0).
        value = 0
    lookup = {"=": "exact", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}.get(cond.op)
    if lookup:
        return qs.filter(**{f"record_id__{lookup}": value})
    return qs.exclude(record_id=value)


def _as_int(value) -> int | None:
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip()
        try:
            number = int(text)
        except ValueError:
            try:
                as_float = float(text)
            except ValueError:
                return None
            if as_float != as_float:  # NaN is not an ID
                return None
            if as_float in (float("inf"), float("-inf")):
                return MAX_ID if as_float > 0 else -MAX_ID
            number = int(as_float)
    return max(-MAX_ID, min(MAX_ID, number))


def _as_number(value) -> float | None:
    if value is None or isinstance(value, bool | dict | list):
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return number if number == number else None


def _compare(left, right) -> int | None:
    """-1/0/1 comparing a stored value with a filter value; numbers numerically."""
    if left is None:
        return None
    ln, rn = _as_number(left), _as_number(right)
    if ln is not None and rn is not None:
        return (ln > rn) - (ln < rn)
    ls, rs = str(left), str(right)
    return (ls > rs) - (ls < rs)


def condition_matches(row: dict, cond: Condition) -> bool:
    """Whether a stored row satisfies one condition (the list queries' comparison rules)."""
    return _matches(row, cond)


def _matches(row: dict, cond: Condition) -> bool:
    value = row.get(cond.field)
    if cond.op in ("in", "not_in") or isinstance(cond.value, list):
        values = cond.value if isinstance(cond.value, list) else [cond.value]
        hit = any(_compare(value, v) == 0 for v in values)
        return (not hit) if cond.op in ("not_in", "!=") else hit
    if cond.op in ("like", "not_like"):
        hit = value is not None and str(cond.value).lower() in str(value).lower()
        return hit if cond.op == "like" else not hit
    result = _compare(value, cond.value)
    if cond.op == "!=":
        return result != 0
    if result is None:
        return False
    return {"=": result == 0, ">": result > 0, ">=": result >= 0, "<": result < 0, "<=": result <= 0}[cond.op]


def _sort_key(value):
    number = _as_number(value)
    if value is None:
        return (0, 0.0, "")
    if number is not None:
        return (1, number, "")
    return (2, 0.0, str(value))
