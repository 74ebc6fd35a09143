"""The REST methods the sandbox portal implements, as plain functions over validated params.

Each handler takes `(ctx, params)` and returns an `Outcome` (result, and for lists total/next)
or raises `SandboxError`. The registries that map a lower-case method name to a `MethodSpec`
live in `registry`; dispatch, auth, limits, faults and batch live in `dispatch`.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from . import clock
from .errors import SandboxError, v3_error
from .models import SandboxPortal
from .records import (
    MAX_ID,
    MAX_OFFSET,
    PAGE_SIZE,
    Condition,
    condition_matches,
    record_create,
    record_delete,
    record_get,
    record_query,
    record_update,
)


@dataclass
class Ctx:
    portal: SandboxPortal
    user_id: int
    api: str = "v2"
    caller: str = ""  # "webhook:<pk>" or "app:<client_id>"
    client_id: str | None = None  # None: an incoming webhook (no application context)
    scopes: frozenset[str] | None = None  # None: every scope
    is_admin: bool = False
    auth_connector: str = ""  # the call's `auth_connector`: its changes are not queued back (FACTS §11)


@dataclass
class Outcome:
    result: object
    total: int | None = None
    next: int | None = None
    raw: bool = False  # the answer is `result` itself, without the envelope (rest.documentation.openapi)


@dataclass(frozen=True)
class MethodSpec:
    name: str
    scopes: tuple[str, ...]  # any of these grants the method; "basic" is always granted
    handler: Callable[[Ctx, dict], Outcome] | None = None
    is_batch: bool = False
    is_write: bool = False
    extra: dict = field(default_factory=dict)
    args: tuple[str, ...] = ()  # names of positional parameters "0", "1", ... (legacy methods)
    app_only: bool = False  # needs an application context: webhooks get WRONG_AUTH_TYPE


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds")


def _param(params: dict, *names: str):
    """Bitrix24 reads most top-level parameters case-insensitively (`id`/`ID`)."""
    lowered = {str(k).lower(): v for k, v in params.items()}
    for name in names:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


def _positive_int(value) -> int | None:
    if isinstance(value, bool) or value is None or isinstance(value, dict | list):
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if 0 < number <= MAX_ID else None


# ---------------------------------------------------------------------------- list parameters


def parse_start(params: dict) -> tuple[int, bool]:
    """(offset, count) from `start`: -1 means first 50 rows without the count query."""
    raw = _param(params, "start")
    if raw is None or isinstance(raw, dict | list | bool):
        return 0, True
    try:
        start = int(str(raw).strip())
    except ValueError:
        return 0, True
    if start == -1:
        return 0, False
    return max(0, min(start, MAX_OFFSET)), True


_PREFIXES = (">=", "<=", "!=", "!%", "!@", "=%", "%=", ">", "<", "=", "!", "%", "@")
_PREFIX_OPS = {
    ">=": ">=", "<=": "<=", "!=": "!=", "!%": "not_like", "!@": "not_in", "=%": "like", "%=": "like",
    ">": ">", "<": "<", "=": "=", "!": "!=", "%": "like", "@": "in",
}


def parse_v2_filter(raw, *, upper: bool = True) -> list[Condition]:
    """`{">ID": 5, "=STATUS_ID": "NEW", "TITLE": ["a","b"]}` into conditions."""
    if raw in (None, "", []):
        return []
    if not isinstance(raw, dict):
        raise SandboxError("", "Parameter 'filter' must be array.", status=400)
    conditions = []
    for key, value in raw.items():
        key = str(key).strip()
        op = "="
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                op, key = _PREFIX_OPS[prefix], key[len(prefix) :]
                break
        if not key:
            continue
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list) and op == "=":
            op = "in"
        conditions.append(Condition(key.upper() if upper else key, op, value))
    return conditions


def parse_v2_order(raw) -> list[tuple[str, bool]]:
    if raw in (None, "", []):
        return []
    if not isinstance(raw, dict):
        raise SandboxError("", "Parameter 'order' must be array.", status=400)
    return [(str(k).strip().upper(), str(v).strip().upper() == "DESC") for k, v in raw.items()]


def parse_v2_select(raw) -> list[str] | None:
    if raw in (None, "", []):
        return None
    if isinstance(raw, dict):
        raw = list(raw.values())
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise SandboxError("", "Parameter 'select' must be array of strings.", status=400)
    return [x.strip() for x in raw]


def page(offset: int, count: bool, total: int | None, rows: int) -> tuple[int | None, int | None]:
    """(total, next) for a v2 list answer."""
    if not count:
        return None, None
    nxt = offset + PAGE_SIZE if offset + PAGE_SIZE < (total or 0) else None
    return total, nxt


# ---------------------------------------------------------------------------- tasks

# canonical (stored, v2 upper-case) field -> (v2 camelCase output key, v3 key)
TASK_FIELDS = {
    "ID": ("id", "id"),
    "TITLE": ("title", "title"),
    "DESCRIPTION": ("description", "description"),
    "CREATED_BY": ("createdBy", "creatorId"),
    "RESPONSIBLE_ID": ("responsibleId", "responsibleId"),
    "STATUS": ("status", "status"),
    "PRIORITY": ("priority", "priority"),
    "DEADLINE": ("deadline", "deadline"),
    "GROUP_ID": ("groupId", "groupId"),
    "PARENT_ID": ("parentId", "parentId"),
    "CREATED_DATE": ("createdDate", "created"),
    "CHANGED_DATE": ("changedDate", "changed"),
    "CLOSED_DATE": ("closedDate", "closed"),
    "UF_CRM_TASK": ("ufCrmTask", "crmItemIds"),
}
V3_TO_CANON = {v3: canon for canon, (_, v3) in TASK_FIELDS.items()}
TASK_INT_FIELDS = {"ID", "CREATED_BY", "RESPONSIBLE_ID", "GROUP_ID", "PARENT_ID"}
STATUS_V3 = {"1": "new", "2": "pending", "3": "in_progress", "4": "supposedly_completed", "5": "completed",
             "6": "deferred", "7": "declined"}
STATUS_FROM_V3 = {v: k for k, v in STATUS_V3.items()}
PRIORITY_V3 = {"0": "low", "1": "average", "2": "high"}
PRIORITY_FROM_V3 = {v: k for k, v in PRIORITY_V3.items()}


def _task_clean_v2(raw, *, creating: bool, user_id: int) -> dict:
    if not isinstance(raw, dict):
        raise SandboxError("ERROR_CORE", "Parameter 'fields' must be array.", status=400)
    clean = {}
    for key, value in raw.items():
        name = str(key).strip().upper()
        if name not in TASK_FIELDS or name in ("ID", "CREATED_DATE", "CHANGED_DATE", "CLOSED_DATE"):
            continue
        if name == "UF_CRM_TASK":
            if isinstance(value, dict):
                value = list(value.values())
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list):
                raise SandboxError("ERROR_CORE", "UF_CRM_TASK must be a list.", status=400)
            clean[name] = [str(v) for v in value]
            continue
        if isinstance(value, dict | list):
            raise SandboxError("ERROR_CORE", f"Field {name} must be a scalar.", status=400)
        if name in TASK_INT_FIELDS:
            number = _positive_int(value) if value not in ("0", 0) else 0
            if number is None:
                raise SandboxError("ERROR_CORE", f"Field {name} must be an integer.", status=400)
            clean[name] = str(number)
        elif name == "STATUS":
            if str(value) not in STATUS_V3:
                raise SandboxError("ERROR_CORE", "Unknown task status.", status=400)
            clean[name] = str(value)
        elif name == "PRIORITY":
            if str(value) not in PRIORITY_V3:
                raise SandboxError("ERROR_CORE", "Unknown task priority.", status=400)
            clean[name] = str(value)
        else:
            clean[name] = None if value is None else str(value)
    if creating and not str(clean.get("TITLE") or "").strip():
        raise SandboxError("ERROR_CORE", "Task title is not specified", status=400)
    return clean


def _task_new(ctx: Ctx, fields: dict) -> Callable[[int], dict]:
    stamp = iso(clock.now())

    def build(new_id: int) -> dict:
        data = {"ID": str(new_id), "TITLE": "", "DESCRIPTION": "", "CREATED_BY": str(ctx.user_id),
                "RESPONSIBLE_ID": str(ctx.user_id), "STATUS": "2", "PRIORITY": "1", "DEADLINE": None,
                "GROUP_ID": "0", "PARENT_ID": None, "CREATED_DATE": stamp, "CHANGED_DATE": stamp,
                "CLOSED_DATE": None, "UF_CRM_TASK": []}
        data.update(fields)
        return data

    return build


def _task_apply(fields: dict) -> Callable[[dict], dict]:
    stamp = iso(clock.now())

    def apply(data: dict) -> dict:
        data.update(fields)
        data["CHANGED_DATE"] = stamp
        if fields.get("STATUS") == "5" and not data.get("CLOSED_DATE"):
            data["CLOSED_DATE"] = stamp
        return data

    return apply


def task_v2_view(row: dict, select: list[str] | None = None) -> dict:
    wanted = None if not select or "*" in select else {s.upper() for s in select} | {"ID"}
    return {v2: row.get(canon) for canon, (v2, _) in TASK_FIELDS.items() if wanted is None or canon in wanted}


def _task_id_v2(params: dict) -> int:
    raw = _param(params, "taskId", "id")
    if raw is None:
        raise SandboxError("100", "CTaskItem All parameters in the constructor must have real class type "
                                  "(internal error)", status=400)
    task_id = _positive_int(raw)
    if task_id is None:
        raise SandboxError("0", "wrong task id", status=400)
    return task_id


def tasks_v2_add(ctx: Ctx, params: dict) -> Outcome:
    fields = _task_clean_v2(_param(params, "fields"), creating=True, user_id=ctx.user_id)
    _, data = record_create(portal=ctx.portal, entity="task", build=_task_new(ctx, fields))
    return Outcome({"task": task_v2_view(data)})


def tasks_v2_get(ctx: Ctx, params: dict) -> Outcome:
    select = parse_v2_select(_param(params, "select"))
    row = record_get(portal=ctx.portal, entity="task", record_id=_task_id_v2(params))
    if row is None:
        return Outcome([])  # documented: an empty array when the task does not exist
    return Outcome({"task": task_v2_view(row, select)})


def tasks_v2_update(ctx: Ctx, params: dict) -> Outcome:
    task_id = _task_id_v2(params)
    fields = _task_clean_v2(_param(params, "fields"), creating=False, user_id=ctx.user_id)
    row = record_update(portal=ctx.portal, entity="task", record_id=task_id, apply=_task_apply(fields))
    if row is None:
        raise SandboxError("ERROR_CORE", "Task not found or access denied", status=400)
    return Outcome({"task": task_v2_view(row)})


def tasks_v2_delete(ctx: Ctx, params: dict) -> Outcome:
    if not record_delete(portal=ctx.portal, entity="task", record_id=_task_id_v2(params)):
        raise SandboxError("ERROR_CORE", "Task not found or access denied", status=400)
    return Outcome({"task": True})


def tasks_v2_list(ctx: Ctx, params: dict) -> Outcome:
    conditions = parse_v2_filter(_param(params, "filter"))
    order = parse_v2_order(_param(params, "order"))
    select = parse_v2_select(_param(params, "select"))
    offset, count = parse_start(params)
    rows, total = record_query(portal=ctx.portal, entity="task", conditions=conditions, order=order,
                               offset=offset, count=count)
    total, nxt = page(offset, count, total, len(rows))
    return Outcome({"tasks": [task_v2_view(r, select) for r in rows]}, total=total, next=nxt)


# ---------------------------------------------------------------------------- tasks (REST 3.0)


def task_v3_view(row: dict, select: list[str] | None) -> dict:
    out = {}
    for canon, (_, v3) in TASK_FIELDS.items():
        if select is not None and v3 not in select and v3 != "id":
            continue
        value = row.get(canon)
        if canon in TASK_INT_FIELDS and value is not None:
            value = int(value)
        elif canon == "STATUS":
            value = STATUS_V3.get(str(value), value)
        elif canon == "PRIORITY":
            value = PRIORITY_V3.get(str(value), value)
        out[v3] = value
    return out


def _v3_validation(field_name: str, message: str) -> SandboxError:
    return v3_error("VALIDATION_REQUESTVALIDATIONEXCEPTION", "Error during request object validation",
                    validation=[{"message": message, "field": field_name}])


def _v3_id(params: dict) -> int:
    raw = params.get("id")
    if raw is None:
        raise _v3_validation("id", "Required field `id` is missing")
    if isinstance(raw, str) and raw.isdigit():
        raw = int(raw)
    if not _v3_int(raw) or raw <= 0:
        raise _v3_validation("id", "Field `id` requires data type `int` for this request")
    return raw


def _v3_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -MAX_ID <= value <= MAX_ID


def _v3_select(params: dict) -> list[str] | None:
    raw = params.get("select")
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
        raise _v3_validation("select", "Field `select` requires data type `array` for this request")
    return raw


def _task_clean_v3(raw, *, creating: bool) -> dict:
    if not isinstance(raw, dict):
        raise _v3_validation("fields", "Required field `fields` is missing")
    clean = {}
    for key, value in raw.items():
        canon = V3_TO_CANON.get(key)
        if canon is None or canon in ("ID", "CREATED_DATE", "CHANGED_DATE", "CLOSED_DATE"):
            if canon is None:
                raise v3_error("UNKNOWNDTOPROPERTYEXCEPTION", f"Unknown field `{key}` for entity `TaskDto`")
            continue
        if canon in TASK_INT_FIELDS:
            if value is None and canon in ("PARENT_ID",):
                clean[canon] = None
                continue
            if not _v3_int(value) or value < 0:
                raise _v3_validation(key, f"Field `{key}` requires data type `int` for this request")
            clean[canon] = str(value)
        elif canon == "STATUS":
            if value not in STATUS_FROM_V3:
                raise _v3_validation(key, f"Field `{key}` has an unknown value")
            clean[canon] = STATUS_FROM_V3[value]
        elif canon == "PRIORITY":
            if value not in PRIORITY_FROM_V3:
                raise _v3_validation(key, f"Field `{key}` has an unknown value")
            clean[canon] = PRIORITY_FROM_V3[value]
        elif canon == "UF_CRM_TASK":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise _v3_validation(key, f"Field `{key}` requires data type `array` for this request")
            clean[canon] = value
        else:
            if value is not None and not isinstance(value, str):
                raise _v3_validation(key, f"Field `{key}` requires data type `string` for this request")
            clean[canon] = value
    if creating:
        for required in ("title", "creatorId", "responsibleId"):
            if V3_TO_CANON[required] not in clean:
                raise _v3_validation(required, f"Required field `{required}` is missing")
        if not str(clean["TITLE"] or "").strip():
            raise _v3_validation("title", "Required field `title` is missing")
    return clean


def _v3_not_found(task_id: int) -> SandboxError:
    return v3_error("ENTITYNOTFOUNDEXCEPTION", f"Task `{task_id}` not found")


def tasks_v3_add(ctx: Ctx, params: dict) -> Outcome:
    fields = _task_clean_v3(params.get("fields"), creating=True)
    _, data = record_create(portal=ctx.portal, entity="task", build=_task_new(ctx, fields))
    return Outcome({"item": task_v3_view(data, None)})


def tasks_v3_get(ctx: Ctx, params: dict) -> Outcome:
    task_id = _v3_id(params)
    select = _v3_select(params)
    row = record_get(portal=ctx.portal, entity="task", record_id=task_id)
    if row is None:
        raise _v3_not_found(task_id)
    return Outcome({"item": task_v3_view(row, select)})


def tasks_v3_update(ctx: Ctx, params: dict) -> Outcome:
    task_id = _v3_id(params)
    fields = _task_clean_v3(params.get("fields"), creating=False)
    if record_update(portal=ctx.portal, entity="task", record_id=task_id, apply=_task_apply(fields)) is None:
        raise _v3_not_found(task_id)
    return Outcome({"result": True})


def tasks_v3_delete(ctx: Ctx, params: dict) -> Outcome:
    task_id = _v3_id(params)
    if not record_delete(portal=ctx.portal, entity="task", record_id=task_id):
        raise _v3_not_found(task_id)
    return Outcome({"result": True})


_V3_OPS = {"=": "=", "!=": "!=", ">": ">", ">=": ">=", "<": "<", "<=": "<=", "in": "in"}

# REST 3.0 task fields: (type, filterable, sortable, multiple), as tasks.task.field.list lists them
# (api-reference/tasks/tasks-task-field-list.md: only `id` is filterable and sortable for tasks).
TASK_V3_FIELDS = {
    "id": ("int", True, True, False), "title": ("string", False, False, False),
    "description": ("string", False, False, False), "creatorId": ("int", False, False, False),
    "responsibleId": ("int", False, False, False), "status": ("string", False, False, False),
    "priority": ("string", False, False, False), "deadline": ("string", False, False, False),
    "groupId": ("int", False, False, False), "parentId": ("int", False, False, False),
    "created": ("string", False, False, False), "changed": ("string", False, False, False),
    "closed": ("string", False, False, False), "crmItemIds": ("string", False, False, True),
}


def _v3_condition(item, dto: str) -> list[Condition]:
    """One `[field, op, value]` (or `[field, value]`) condition as stored-field conditions."""
    if not isinstance(item, list) or len(item) not in (2, 3) or not isinstance(item[0], str):
        raise _v3_validation("filter", "Unable to recognize the filter condition")
    name = item[0]
    if len(item) == 2:
        op, value = ("in" if isinstance(item[1], list) else "="), item[1]
    else:
        op, value = item[1], item[2]
    spec = TASK_V3_FIELDS.get(name)
    if spec is None:
        raise v3_error("UNKNOWNDTOPROPERTYEXCEPTION", f"Unknown field `{name}` for entity `{dto}`")
    if not spec[1]:
        raise _v3_validation(name, f"In DTO `{dto}`, the `{name}` field requires the `Filterable` attribute "
                                   "for such a request")
    if not isinstance(op, str) or (op not in _V3_OPS and op != "between"):
        raise v3_error("UNKNOWNFILTEROPERATOREXCEPTION", f"Unknown filter operator `{op}`")
    values = value if isinstance(value, list) else [value]
    if op == "between" and len(values) != 2:
        raise _v3_validation(name, "`between` needs two values")
    if spec[0] == "int" and not all(_v3_int(v) for v in values):
        raise _v3_validation(name, f"Field `{name}` requires data type `int` for this request")
    canon = V3_TO_CANON[name]
    if op == "between":
        return [Condition(canon, ">=", values[0]), Condition(canon, "<=", values[1])]
    return [Condition(canon, _V3_OPS[op], value)]


def _v3_group(item: dict, dto: str, depth: int):
    """`{"logic": "or"|"and", "conditions": [...]}` as a predicate over a stored row."""
    if depth > 8:
        raise _v3_validation("filter", "Filter groups are nested too deeply")
    logic = str(item.get("logic", "and")).lower()
    members = item.get("conditions")
    if logic not in ("or", "and") or not isinstance(members, list) or not members:
        raise _v3_validation("filter", "A filter group needs `logic` (or/and) and a non-empty `conditions` array")
    parts = [_v3_group(m, dto, depth + 1) if isinstance(m, dict) else _all_of(_v3_condition(m, dto))
             for m in members]
    if logic == "or":
        return lambda row: any(part(row) for part in parts)
    return lambda row: all(part(row) for part in parts)


def _all_of(conditions: list[Condition]):
    return lambda row: all(condition_matches(row, c) for c in conditions)


def _v3_filter(raw, dto: str = "TaskDto"):
    """(AND-ed simple conditions, a predicate for the `logic` groups or None) — FACTS §3."""
    if raw is None:
        return [], None
    if not isinstance(raw, list):
        raise _v3_validation("filter", "Field `filter` requires data type `array` for this request")
    conditions, groups = [], []
    for item in raw:
        if isinstance(item, dict):
            groups.append(_v3_group(item, dto, 1))
        else:
            conditions += _v3_condition(item, dto)
    if not groups:
        return conditions, None
    return conditions, lambda row: all(group(row) for group in groups)


def tasks_v3_field_list(ctx: Ctx, params: dict) -> Outcome:
    select = _v3_select(params)
    items = []
    for name, (ftype, filterable, sortable, multiple) in TASK_V3_FIELDS.items():
        item = {"name": name, "type": ftype, "title": name, "description": None, "filterable": filterable,
                "sortable": sortable, "multiple": multiple}
        items.append({k: v for k, v in item.items() if select is None or k in select})
    return Outcome({"items": items})


def tasks_v3_list(ctx: Ctx, params: dict) -> Outcome:
    select = _v3_select(params)
    conditions, predicate = _v3_filter(params.get("filter"))
    raw_order = params.get("order") or {}
    if not isinstance(raw_order, dict):
        raise v3_error("INVALIDORDEREXCEPTION", f"Unable to recognize sorting parameter `{raw_order}`")
    order = []
    for key, direction in raw_order.items():
        canon = V3_TO_CANON.get(key)
        if canon is None or str(direction).upper() not in ("ASC", "DESC"):
            raise v3_error("INVALIDORDEREXCEPTION", f"Unable to recognize sorting parameter `{key}`")
        order.append((canon, str(direction).upper() == "DESC"))
    pagination = params.get("pagination") or {}
    if not isinstance(pagination, dict):
        raise v3_error("INVALIDPAGINATIONEXCEPTION", "Unable to recognize the pagination parameter")
    try:
        limit = int(pagination.get("limit", 50))
        page_no = int(pagination.get("page", 1))
        offset = int(pagination.get("offset", (page_no - 1) * limit))
    except (TypeError, ValueError, OverflowError):
        raise v3_error("INVALIDPAGINATIONEXCEPTION", f"Unable to recognize the pagination parameter `{pagination}`")
    if limit <= 0 or limit > 1000 or not 0 <= offset <= MAX_OFFSET or not 0 < page_no <= MAX_OFFSET // 1000:
        raise v3_error("INVALIDPAGINATIONEXCEPTION", f"Unable to recognize the pagination parameter `{pagination}`")
    if "offset" not in pagination:
        offset = (page_no - 1) * limit
    rows, _ = record_query(portal=ctx.portal, entity="task", conditions=conditions, order=order, offset=offset,
                           limit=limit, count=False, predicate=predicate)
    return Outcome({"items": [task_v3_view(r, select if select is not None else ["id"]) for r in rows]})
