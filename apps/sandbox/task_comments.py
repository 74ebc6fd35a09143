"""Legacy task comments (`task.commentitem.*`, scope `task`): methods whose parameters are
positional (FACTS §1: `0=123&1[POST_MESSAGE]=...`). Their `MethodSpec.args` name the positions;
the dispatcher binds `"0"`, `"1"`, ... to those names before the handler runs, so the named form
the docs' examples use (`{"TASKID": 1, "FIELDS": {...}}`) works as well.

Errors follow the pages: `ERROR_CORE` with the portal's wording, HTTP 400.
"""

from . import clock
from .errors import SandboxError
from .methods import Ctx, Outcome, _param, _positive_int, iso, parse_v2_filter, parse_v2_order
from .records import Condition, record_create, record_delete, record_get, record_query

ENTITY = "task_comment"


def _core(message: str) -> SandboxError:
    return SandboxError("ERROR_CORE", message, status=400)


def _task_id(params: dict, method: str) -> int:
    task_id = _positive_int(_param(params, "TASKID"))
    if task_id is None:
        raise _core(f"TASKS_ERROR_EXCEPTION_#256; Param #0 (taskId) for method ctaskcommentitem::{method}() "
                    "expected to be of type \"integer\", but given something else.; 256/TE/WRONG_ARGUMENTS")
    return task_id


def _task(ctx: Ctx, params: dict, method: str) -> int:
    task_id = _task_id(params, method)
    if record_get(portal=ctx.portal, entity="task", record_id=task_id) is None:
        raise _core("TASKS_ERROR_EXCEPTION_#8; Action failed; 8/TE/ACTION_FAILED_TO_BE_PROCESSED")
    return task_id


def _view(row: dict) -> dict:
    return {k: row.get(k) for k in ("POST_MESSAGE_HTML", "ID", "AUTHOR_ID", "AUTHOR_NAME", "AUTHOR_EMAIL",
                                    "POST_DATE", "POST_MESSAGE")}


def commentitem_add(ctx: Ctx, params: dict) -> Outcome:
    task_id = _task(ctx, params, "add")
    fields = _param(params, "FIELDS")
    if not isinstance(fields, dict):
        raise _core("TASKS_ERROR_EXCEPTION_#256; Param #1 (arFields) for method ctaskcommentitem::add() "
                    "expected to be of type \"array\", but given something else.; 256/TE/WRONG_ARGUMENTS")
    allowed = {"POST_MESSAGE", "AUTHOR_ID", "POST_DATE", "UF_FORUM_MESSAGE_DOC"}
    for key in fields:
        if str(key).upper() not in allowed:
            raise _core(f"TASKS_ERROR_EXCEPTION_#256; Param #1 (arFields) for method ctaskcommentitem::add() "
                        f"must not contain key `{key}`.; 256/TE/WRONG_ARGUMENTS")
    upper = {str(k).upper(): v for k, v in fields.items()}
    message = upper.get("POST_MESSAGE")
    if not isinstance(message, str | int) or not str(message).strip():
        raise _core("Comment text is not specified")
    author = _positive_int(upper.get("AUTHOR_ID")) or ctx.user_id
    stamp = upper.get("POST_DATE") if isinstance(upper.get("POST_DATE"), str) else iso(clock.now())

    def build(new_id: int) -> dict:
        return {"ID": str(new_id), "TASK_ID": str(task_id), "POST_MESSAGE_HTML": None, "AUTHOR_ID": str(author),
                "AUTHOR_NAME": f"Sandbox User {author}", "AUTHOR_EMAIL": "", "POST_DATE": stamp,
                "POST_MESSAGE": str(message)}

    new_id, _ = record_create(portal=ctx.portal, entity=ENTITY, build=build)
    return Outcome(new_id)


def commentitem_get(ctx: Ctx, params: dict) -> Outcome:
    task_id = _task(ctx, params, "get")
    item_id = _positive_int(_param(params, "ITEMID"))
    row = record_get(portal=ctx.portal, entity=ENTITY, record_id=item_id) if item_id else None
    if row is None or row.get("TASK_ID") != str(task_id):
        raise _core("TASKS_ERROR_EXCEPTION_#8; Action failed; 8/TE/ACTION_FAILED_TO_BE_PROCESSED")
    return Outcome(_view(row))


def commentitem_getlist(ctx: Ctx, params: dict) -> Outcome:
    task_id = _task(ctx, params, "getlist")
    order = parse_v2_order(_param(params, "ORDER")) or [("ID", True)]
    conditions = [Condition("TASK_ID", "=", str(task_id)), *parse_v2_filter(_param(params, "FILTER"))]
    rows, _ = record_query(portal=ctx.portal, entity=ENTITY, conditions=conditions, order=order, offset=0,
                           limit=10**6, count=False)
    return Outcome([_view(r) for r in rows])


def commentitem_delete(ctx: Ctx, params: dict) -> Outcome:
    task_id = _task(ctx, params, "delete")
    item_id = _positive_int(_param(params, "ITEMID"))
    row = record_get(portal=ctx.portal, entity=ENTITY, record_id=item_id) if item_id else None
    if row is None or row.get("TASK_ID") != str(task_id):
        raise _core("TASKS_ERROR_EXCEPTION_#8; Action failed; 8/TE/ACTION_FAILED_TO_BE_PROCESSED")
    record_delete(portal=ctx.portal, entity=ENTITY, record_id=item_id)
    return Outcome(True)
