"""Scrum (`tasks.api.scrum.*`, scope `task`): the backlog of a scrum workgroup (a group with a
`SCRUM_MASTER_ID`), epics, sprints with their kanban stages, and a task's scrum fields
(entity, story points, epic). Answers in the camelCase shapes of the scrum pages; a group that is
not a scrum, an unknown sprint, epic or task, or malformed fields answer HTTP 400 with the
controller's message, never a 500.
"""

from . import clock
from .errors import SandboxError
from .methods import Ctx, Outcome, _param, _positive_int, iso
from .records import Condition, record_create, record_get, record_query, record_update

ENTITY = "scrum_entity"  # backlog and sprints share one sequence, as entities of the scrum
EPIC = "scrum_epic"
STAGE = "scrum_stage"
SPRINT_STATES = ("planned", "active", "completed")
DEFAULT_STAGES = (("New", "NEW", "00C4FB"), ("In progress", "WORK", "47D1E2"), ("Done", "FINISH", "75D900"))


def _error(message: str) -> SandboxError:
    return SandboxError("ERROR_CORE", message, status=400)


def _fields(params: dict) -> dict:
    fields = _param(params, "fields")
    if not isinstance(fields, dict):
        raise _error("Required parameter \"fields\" is not set or is not an array")
    return fields


def _scrum_group(ctx: Ctx, raw) -> dict:
    group_id = _positive_int(raw)
    group = record_get(portal=ctx.portal, entity="sonet_group", record_id=group_id) if group_id else None
    if group is None:
        raise _error("Group not found")
    if not group.get("SCRUM_MASTER_ID"):
        raise _error("Group is not a scrum")
    return group


def _entities(ctx: Ctx, group_id: int, kind: str) -> list[dict]:
    rows, _ = record_query(portal=ctx.portal, entity=ENTITY, conditions=[
        Condition("groupId", "=", group_id), Condition("entityType", "=", kind)], order=[], offset=0,
        limit=10**6, count=False)
    return rows


def _backlog(ctx: Ctx, group: dict) -> dict:
    group_id = int(group["ID"])
    found = _entities(ctx, group_id, "backlog")
    if found:
        return found[0]
    _, row = record_create(portal=ctx.portal, entity=ENTITY, build=lambda new_id: {
        "id": new_id, "groupId": group_id, "entityType": "backlog", "createdBy": int(group["OWNER_ID"]),
        "modifiedBy": int(group["OWNER_ID"]), "info": {"sprintGoal": ""}})
    return row


def backlog_get(ctx: Ctx, params: dict) -> Outcome:
    return Outcome(_backlog(ctx, _scrum_group(ctx, _param(params, "id"))))


def epic_add(ctx: Ctx, params: dict) -> Outcome:
    fields = _fields(params)
    group = _scrum_group(ctx, fields.get("groupId"))
    name = fields.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _error("Required field \"name\" is not set")
    color = fields.get("color") if isinstance(fields.get("color"), str) else "#69dafc"
    _, row = record_create(portal=ctx.portal, entity=EPIC, build=lambda new_id: {
        "id": new_id, "groupId": int(group["ID"]), "name": name.strip(),
        "description": str(fields.get("description") or ""), "createdBy": ctx.user_id, "modifiedBy": ctx.user_id,
        "color": color})
    return Outcome(row)


def epic_list(ctx: Ctx, params: dict) -> Outcome:
    rows, total = record_query(portal=ctx.portal, entity=EPIC, conditions=[], order=[], offset=0, limit=50)
    flt = _param(params, "filter")
    if isinstance(flt, dict) and "GROUP_ID" in {str(k).upper() for k in flt}:
        wanted = next(v for k, v in flt.items() if str(k).upper() == "GROUP_ID")
        rows = [r for r in rows if str(r["groupId"]) == str(wanted)]
        total = len(rows)
    return Outcome(rows, total=total)


def _sprint(ctx: Ctx, raw) -> dict:
    sprint_id = _positive_int(raw)
    row = record_get(portal=ctx.portal, entity=ENTITY, record_id=sprint_id) if sprint_id else None
    if row is None or row["entityType"] != "sprint":
        raise _error("Sprint not found")
    return row


def _timestamp(value, name: str) -> int | None:
    if value in (None, ""):
        return None
    number = _positive_int(value)
    if number is None:
        raise _error(f"Field \"{name}\" must be a Unix timestamp")
    return number


def sprint_add(ctx: Ctx, params: dict) -> Outcome:
    fields = _fields(params)
    group = _scrum_group(ctx, fields.get("groupId"))
    name = fields.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _error("Required field \"name\" is not set")
    status = fields.get("status") or "planned"
    if status not in SPRINT_STATES:
        raise _error("Field \"status\" must be one of planned, active, completed")
    now = int(clock.now())
    start = _timestamp(fields.get("dateStart"), "dateStart") or now
    end = _timestamp(fields.get("dateEnd"), "dateEnd") or start + 14 * 86400
    if end < start:
        raise _error("Field \"dateEnd\" is earlier than \"dateStart\"")
    _, row = record_create(portal=ctx.portal, entity=ENTITY, build=lambda new_id: {
        "id": new_id, "groupId": int(group["ID"]), "entityType": "sprint", "name": name.strip(),
        "goal": str(fields.get("goal") or ""), "sort": _positive_int(fields.get("sort")) or 1,
        "createdBy": ctx.user_id, "modifiedBy": ctx.user_id, "dateStart": iso(start), "dateEnd": iso(end),
        "status": status})
    for sort, (title, kind, color) in enumerate(DEFAULT_STAGES, start=1):
        record_create(portal=ctx.portal, entity=STAGE, build=lambda new_id, t=title, k=kind, c=color, s=sort: {
            "id": new_id, "name": t, "sort": s * 100, "type": k, "sprintId": row["id"], "color": c})
    return Outcome(row)


def sprint_get(ctx: Ctx, params: dict) -> Outcome:
    return Outcome(_sprint(ctx, _param(params, "id")))


def sprint_start(ctx: Ctx, params: dict) -> Outcome:
    sprint = _sprint(ctx, _param(params, "id"))
    if sprint["status"] != "planned":
        raise _error("Only a planned sprint can be started")
    if any(s["status"] == "active" for s in _entities(ctx, sprint["groupId"], "sprint")):
        raise _error("The group already has an active sprint")
    row = record_update(portal=ctx.portal, entity=ENTITY, record_id=sprint["id"],
                        apply=lambda r: {**r, "status": "active", "modifiedBy": ctx.user_id})
    return Outcome(row)


def _task(ctx: Ctx, raw) -> dict:
    task_id = _positive_int(raw)
    task = record_get(portal=ctx.portal, entity="task", record_id=task_id) if task_id else None
    if task is None:
        raise _error("Task not found")
    return task


def _scrum_fields(task: dict) -> dict:
    scrum = task.get("SCRUM") or {}
    return {"entityId": scrum.get("entityId", 0), "storyPoints": scrum.get("storyPoints", ""),
            "epicId": scrum.get("epicId", 0), "sort": scrum.get("sort", 0),
            "createdBy": scrum.get("createdBy", 0), "modifiedBy": scrum.get("modifiedBy", 0)}


def task_get(ctx: Ctx, params: dict) -> Outcome:
    return Outcome(_scrum_fields(_task(ctx, _param(params, "id"))))


def task_update(ctx: Ctx, params: dict) -> Outcome:
    task = _task(ctx, _param(params, "id"))
    fields = _fields(params)
    group_id = _positive_int(task.get("GROUP_ID"))
    scrum = _scrum_fields(task)
    if "entityId" in fields:
        entity_id = _positive_int(fields["entityId"])
        entity = record_get(portal=ctx.portal, entity=ENTITY, record_id=entity_id) if entity_id else None
        if entity is None or entity["groupId"] != group_id:
            raise _error("Backlog or sprint not found in the task's group")
        scrum["entityId"] = entity_id
    if "epicId" in fields:
        epic_id = _positive_int(fields["epicId"]) if fields["epicId"] not in (0, "0") else 0
        epic = record_get(portal=ctx.portal, entity=EPIC, record_id=epic_id) if epic_id else None
        if epic_id is None or (epic_id and (epic is None or epic["groupId"] != group_id)):
            raise _error("Epic not found in the task's group")
        scrum["epicId"] = epic_id
    if "storyPoints" in fields:
        points = fields["storyPoints"]
        if not isinstance(points, str | int) or isinstance(points, bool) or len(str(points)) > 20:
            raise _error("Field \"storyPoints\" must be a string")
        scrum["storyPoints"] = str(points)
    if "sort" in fields:
        scrum["sort"] = _positive_int(fields["sort"]) or 0
    if not scrum["createdBy"]:
        scrum["createdBy"] = ctx.user_id
    scrum["modifiedBy"] = ctx.user_id
    record_update(portal=ctx.portal, entity="task", record_id=int(task["ID"]),
                  apply=lambda r: {**r, "SCRUM": scrum, "CHANGED_DATE": iso(clock.now())})
    return Outcome(True)


def kanban_get_stages(ctx: Ctx, params: dict) -> Outcome:
    sprint = _sprint(ctx, _param(params, "sprintId"))
    rows, _ = record_query(portal=ctx.portal, entity=STAGE, conditions=[Condition("sprintId", "=", sprint["id"])],
                           order=[("sort", False)], offset=0, limit=10**6, count=False)
    return Outcome(rows)


def kanban_add_task(ctx: Ctx, params: dict) -> Outcome:
    sprint = _sprint(ctx, _param(params, "sprintId"))
    task = _task(ctx, _param(params, "taskId"))
    stage_id = _positive_int(_param(params, "stageId"))
    stage = record_get(portal=ctx.portal, entity=STAGE, record_id=stage_id) if stage_id else None
    if stage is None or stage["sprintId"] != sprint["id"]:
        raise _error("Stage not found in the sprint")
    if _scrum_fields(task)["entityId"] != sprint["id"]:
        raise _error("The task is not in the sprint")

    def apply(row: dict) -> dict:
        row["SCRUM"] = {**_scrum_fields(row), "stageId": stage["id"], "modifiedBy": ctx.user_id}
        if stage["type"] == "FINISH":
            row["STATUS"], row["CLOSED_DATE"] = "5", iso(clock.now())
        row["CHANGED_DATE"] = iso(clock.now())
        return row

    record_update(portal=ctx.portal, entity="task", record_id=int(task["ID"]), apply=apply)
    return Outcome(True)
