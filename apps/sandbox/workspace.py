"""Collaboration methods the source's user scenarios use, kept small but with the documented
shapes and errors: notifications (`im.notify.personal.add`, `im.notify.system.add`, scope `im`),
task checklists (`task.checklistitem.*`, scope `task`, positional parameters as the pages say),
calendar events (`calendar.event.add|getbyid`, scope `calendar`), News Feed posts
(`log.blogpost.add|get`, scope `log`), workgroups (`sonet_group.*`, scope `sonet` as the method
pages print it, `sonet_group` as the scope table does: FACTS §12) and business processes
(`bizproc.workflow.*`, scope `bizproc`; the portal's stock templates are listed by
`bizproc.workflow.template.list`).

Errors are answered like the portal's: HTTP 400 with the page's code and wording, never a 500.
"""

import re
import secrets

from . import clock
from .errors import SandboxError
from .methods import Ctx, Outcome, _param, _positive_int, iso, parse_v2_filter, parse_v2_order
from .records import Condition, record_create, record_get, record_query, record_update


def _error(code: str, message: str, status: int = 400) -> SandboxError:
    return SandboxError(code, message, status=status)


def _text(value) -> str:
    return str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else ""


def _all(ctx: Ctx, entity: str, conditions=(), order=()) -> list[dict]:
    rows, _ = record_query(portal=ctx.portal, entity=entity, conditions=list(conditions), order=list(order),
                           offset=0, limit=10**6, count=False)
    return rows


def _user_ids(raw) -> list[int] | None:
    """A list (or PHP-style dict) of positive user IDs; None when any entry is not one."""
    values = list(raw.values()) if isinstance(raw, dict) else raw if isinstance(raw, list) else [raw]
    out = [_positive_int(v) for v in values]
    return None if any(v is None for v in out) else list(dict.fromkeys(out))


# ---------------------------------------------------------------------------- notifications


def _notify(ctx: Ctx, params: dict, kind: str) -> Outcome:
    user_id = _positive_int(_param(params, "USER_ID"))
    if user_id is None:
        raise _error("USER_ID_EMPTY", "Recipient ID not specified")
    message = _text(_param(params, "MESSAGE"))
    if not message:
        raise _error("MESSAGE_EMPTY", "Message text not specified")
    attach = _param(params, "ATTACH")
    if attach is not None and not isinstance(attach, dict | list):
        raise _error("ATTACH_ERROR", "Incorrect attachment format")

    def build(new_id: int) -> dict:
        return {"ID": str(new_id), "TYPE": kind, "USER_ID": str(user_id), "AUTHOR_ID": str(ctx.user_id),
                "MESSAGE": message, "MESSAGE_OUT": _text(_param(params, "MESSAGE_OUT")),
                "TAG": _text(_param(params, "TAG")), "SUB_TAG": _text(_param(params, "SUB_TAG")),
                "DATE": iso(clock.now())}

    new_id, _ = record_create(portal=ctx.portal, entity="im_notify", build=build)
    return Outcome(new_id)


def notify_personal_add(ctx: Ctx, params: dict) -> Outcome:
    return _notify(ctx, params, "personal")


def notify_system_add(ctx: Ctx, params: dict) -> Outcome:
    return _notify(ctx, params, "system")


# ---------------------------------------------------------------------------- task checklists

CHECKLIST = "task_checklist"


def _core(message: str) -> SandboxError:
    return _error("ERROR_CORE", message)


def _checklist_task(ctx: Ctx, params: dict, method: str) -> int:
    task_id = _positive_int(_param(params, "TASKID"))
    if task_id is None:
        raise _core(f"TASKS_ERROR_EXCEPTION_#256; Param #0 (taskId) for method ctaskchecklistitem::{method}() "
                    "expected to be of type \"integer\", but given something else.; 256/TE/WRONG_ARGUMENTS")
    if record_get(portal=ctx.portal, entity="task", record_id=task_id) is None:
        raise _core("TASKS_ERROR_EXCEPTION_#8; Action failed; 8/TE/ACTION_FAILED_TO_BE_PROCESSED")
    return task_id


def _yn(value, default: str = "N") -> str:
    if value is None:
        return default
    return "Y" if str(value).strip().upper() in ("Y", "1", "TRUE") else "N"


def _checklist_view(row: dict) -> dict:
    return {k: row.get(k) for k in ("ID", "TASK_ID", "PARENT_ID", "CREATED_BY", "TITLE", "SORT_INDEX",
                                    "IS_COMPLETE", "IS_IMPORTANT", "TOGGLED_BY", "TOGGLED_DATE", "MEMBERS",
                                    "ATTACHMENTS")}


def checklistitem_add(ctx: Ctx, params: dict) -> Outcome:
    task_id = _checklist_task(ctx, params, "add")
    fields = _param(params, "FIELDS")
    if not isinstance(fields, dict):
        raise _core("TASKS_ERROR_EXCEPTION_#256; Param #1 (arFields) for method ctaskchecklistitem::add() "
                    "expected to be of type \"array\", but given something else.; 256/TE/WRONG_ARGUMENTS")
    upper = {str(k).upper(): v for k, v in fields.items()}
    title = _text(upper.get("TITLE"))
    if not title:
        raise _core("TASKS_ERROR_EXCEPTION_#256; Param #1 (arFields) for method ctaskchecklistitem::add() "
                    "must contain a non-empty TITLE.; 256/TE/WRONG_ARGUMENTS")
    members_raw = upper.get("MEMBERS") or {}
    members: dict[str, dict] = {}
    if isinstance(members_raw, dict):
        for key, value in members_raw.items():
            uid = _positive_int(key)
            kind = value.get("TYPE") if isinstance(value, dict) else value
            if uid is None or str(kind).upper() not in ("A", "R"):
                raise _core("TASKS_ERROR_EXCEPTION_#256; MEMBERS must map user IDs to {TYPE: A|R}.; "
                            "256/TE/WRONG_ARGUMENTS")
            members[str(uid)] = {"USER_ID": str(uid), "TYPE": str(kind).upper()}
    elif members_raw:
        raise _core("TASKS_ERROR_EXCEPTION_#256; MEMBERS must map user IDs to {TYPE: A|R}.; 256/TE/WRONG_ARGUMENTS")
    siblings = _all(ctx, CHECKLIST, [Condition("TASK_ID", "=", str(task_id))])
    parent = _positive_int(upper.get("PARENT_ID"))
    sort = _positive_int(upper.get("SORT_INDEX")) or len(siblings)

    def build(new_id: int) -> dict:
        return {"ID": str(new_id), "TASK_ID": str(task_id), "PARENT_ID": str(parent or 0),
                "CREATED_BY": str(ctx.user_id), "TITLE": title, "SORT_INDEX": str(sort),
                "IS_COMPLETE": _yn(upper.get("IS_COMPLETE")), "IS_IMPORTANT": _yn(upper.get("IS_IMPORTANT")),
                "TOGGLED_BY": None, "TOGGLED_DATE": None, "MEMBERS": members, "ATTACHMENTS": []}

    new_id, _ = record_create(portal=ctx.portal, entity=CHECKLIST, build=build)
    return Outcome(new_id)


def _checklist_item(ctx: Ctx, params: dict, method: str) -> tuple[int, dict]:
    task_id = _checklist_task(ctx, params, method)
    item_id = _positive_int(_param(params, "ITEMID"))
    row = record_get(portal=ctx.portal, entity=CHECKLIST, record_id=item_id) if item_id else None
    if row is None or row.get("TASK_ID") != str(task_id):
        raise _core("TASKS_ERROR_EXCEPTION_#8; Action failed; 8/TE/ACTION_FAILED_TO_BE_PROCESSED")
    return item_id, row


def checklistitem_get(ctx: Ctx, params: dict) -> Outcome:
    _, row = _checklist_item(ctx, params, "get")
    return Outcome(_checklist_view(row))


def checklistitem_getlist(ctx: Ctx, params: dict) -> Outcome:
    task_id = _checklist_task(ctx, params, "getlist")
    order = parse_v2_order(_param(params, "ORDER")) or [("SORT_INDEX", False)]
    rows = _all(ctx, CHECKLIST, [Condition("TASK_ID", "=", str(task_id))], order)
    return Outcome([_checklist_view(r) for r in rows])


def checklistitem_complete(ctx: Ctx, params: dict) -> Outcome:
    item_id, _ = _checklist_item(ctx, params, "complete")

    def apply(row: dict) -> dict:
        return {**row, "IS_COMPLETE": "Y", "TOGGLED_BY": str(ctx.user_id), "TOGGLED_DATE": iso(clock.now())}

    record_update(portal=ctx.portal, entity=CHECKLIST, record_id=item_id, apply=apply)
    return Outcome(True)


# ---------------------------------------------------------------------------- calendar

CALENDAR_TYPES = ("user", "group", "company_calendar")


def _calendar_missing(name: str, method: str) -> SandboxError:
    return _error("", f"The required parameter \"{name}\" for the method \"{method}\" is not set")


def calendar_event_add(ctx: Ctx, params: dict) -> Outcome:
    method = "calendar.event.add"
    for name in ("type", "ownerId", "from", "to", "section", "name"):
        if _param(params, name) in (None, "", []):
            raise _calendar_missing(name, method)
    kind = _text(_param(params, "type"))
    if kind not in CALENDAR_TYPES:
        raise _error("", f"Invalid value of the parameter \"type\" for the method \"{method}\"")
    owner = _positive_int(_param(params, "ownerId"))
    if owner is None and kind != "company_calendar":
        raise _error("", f"Invalid value of the parameter \"ownerId\" for the method \"{method}\"")
    attendees = _param(params, "attendees")
    attendees = _user_ids(attendees) if attendees not in (None, "", []) else []
    if attendees is None:
        raise _error("", f"Invalid value of the parameter \"attendees\" for the method \"{method}\"")
    host = _positive_int(_param(params, "host")) or ctx.user_id
    meeting = _yn(_param(params, "is_meeting"))
    if meeting == "Y" and host not in attendees:
        attendees = [host, *attendees]
    remind_raw = _param(params, "remind") or []
    remind_raw = list(remind_raw.values()) if isinstance(remind_raw, dict) else remind_raw
    remind = []
    for item in remind_raw if isinstance(remind_raw, list) else [None]:
        if not isinstance(item, dict) or _text(item.get("type")) not in ("min", "hour", "day") \
                or _positive_int(item.get("count")) is None:
            raise _error("", f"Invalid value of the parameter \"remind\" for the method \"{method}\"")
        remind.append({"type": item["type"], "count": _positive_int(item["count"])})

    def build(new_id: int) -> dict:
        return {"ID": str(new_id), "PARENT_ID": str(new_id), "NAME": _text(_param(params, "name")),
                "DESCRIPTION": _text(_param(params, "description")), "CAL_TYPE": kind,
                "OWNER_ID": str(owner or 0), "SECTION_ID": _text(_param(params, "section")),
                "DATE_FROM": _text(_param(params, "from")), "DATE_TO": _text(_param(params, "to")),
                "SKIP_TIME": _yn(_param(params, "skip_time")), "IS_MEETING": meeting == "Y",
                "MEETING_HOST": str(host), "ATTENDEES_CODES": [f"U{u}" for u in attendees],
                "ATTENDEE_LIST": [{"id": u, "entryId": u, "status": "H" if u == host else "Q"} for u in attendees],
                "REMIND": remind, "LOCATION": _text(_param(params, "location")),
                "ACCESSIBILITY": _text(_param(params, "accessibility")) or "busy",
                "IMPORTANCE": _text(_param(params, "importance")) or "normal", "CREATED_BY": str(ctx.user_id),
                "DATE_CREATE": iso(clock.now())}

    new_id, _ = record_create(portal=ctx.portal, entity="calendar_event", build=build)
    return Outcome(new_id)


def calendar_event_getbyid(ctx: Ctx, params: dict) -> Outcome:
    event_id = _param(params, "id")
    if event_id in (None, ""):
        raise _calendar_missing("id", "calendar.event.getbyid")
    number = _positive_int(event_id)
    row = record_get(portal=ctx.portal, entity="calendar_event", record_id=number) if number else None
    if row is None:
        raise _error("", "Event not found")
    return Outcome(row)


# ---------------------------------------------------------------------------- News Feed

_DEST_RE = re.compile(r"UA|(U|SG|DR|D)[1-9][0-9]{0,8}")


def blogpost_add(ctx: Ctx, params: dict) -> Outcome:
    message = _text(_param(params, "POST_MESSAGE"))
    if not message:
        raise _error("ERROR_CORE", "No message specified.")
    dest = _param(params, "DEST")
    dest = list(dest.values()) if isinstance(dest, dict) else dest if dest is not None else ["UA"]
    if not isinstance(dest, list) or not dest or not all(isinstance(d, str) and _DEST_RE.fullmatch(d) for d in dest):
        raise _error("ERROR_CORE", "Incorrect post recipients.")
    for code in dest:
        if code.startswith("SG") and record_get(portal=ctx.portal, entity="sonet_group",
                                                record_id=int(code[2:])) is None:
            raise _error("ERROR_CORE", "Incorrect post recipients.")

    def build(new_id: int) -> dict:
        return {"ID": new_id, "BLOG_ID": 1, "PUBLISH_STATUS": "P", "TITLE": _text(_param(params, "POST_TITLE")),
                "AUTHOR_ID": ctx.user_id, "ENABLE_COMMENTS": "Y", "NUM_COMMENTS": 0, "VIEWS": 0,
                "CODE": None, "MICRO": "N" if _text(_param(params, "POST_TITLE")) else "Y",
                "DETAIL_TEXT": message, "DATE_PUBLISH": iso(clock.now()), "CATEGORY_ID": "",
                "HAS_SOCNET_ALL": "Y" if "UA" in dest else "N", "HAS_TAGS": "N", "HAS_IMAGES": "N",
                "HAS_PROPS": "N", "HAS_COMMENT_IMAGES": "N", "DEST": dest,
                "IMPORTANT": _yn(_param(params, "IMPORTANT"))}

    new_id, _ = record_create(portal=ctx.portal, entity="blog_post", build=build)
    return Outcome(new_id)


def blogpost_get(ctx: Ctx, params: dict) -> Outcome:
    rows = _all(ctx, "blog_post")
    post_id = _positive_int(_param(params, "POST_ID"))
    if _param(params, "POST_ID") is not None:
        rows = [r for r in rows if r["ID"] == post_id]
    return Outcome([{k: v for k, v in r.items() if k not in ("DEST", "IMPORTANT")} for r in rows])


# ---------------------------------------------------------------------------- workgroups

GROUP = "sonet_group"
ROLE_OWNER, ROLE_MODERATOR, ROLE_MEMBER = "A", "E", "K"


def _group_or_error(ctx: Ctx, raw) -> dict:
    group_id = _positive_int(raw)
    row = record_get(portal=ctx.portal, entity=GROUP, record_id=group_id) if group_id else None
    if row is None:
        raise _error("ERROR_CORE", "Socialnetwork group not found")
    return row


def sonet_group_create(ctx: Ctx, params: dict) -> Outcome:
    arr = _param(params, "arFields")
    fields = {str(k).upper(): v for k, v in (arr if isinstance(arr, dict) else params).items()}
    name = _text(fields.get("NAME"))
    if not name:
        raise _error("ERROR_CORE", "Group name is not specified.")
    if any(g["NAME"].lower() == name.lower() for g in _all(ctx, GROUP)):
        raise _error("ERROR_CORE", "Group with this name already exists.")
    scrum_master = _positive_int(fields.get("SCRUM_MASTER_ID"))
    if fields.get("SCRUM_MASTER_ID") not in (None, "", 0, "0") and scrum_master is None:
        raise _error("ERROR_CORE", "Incorrect scrum master ID.")
    perms = _text(fields.get("INITIATE_PERMS")) or ROLE_MEMBER
    if perms not in (ROLE_OWNER, ROLE_MODERATOR, ROLE_MEMBER):
        raise _error("ERROR_CORE", "Incorrect INITIATE_PERMS value.")
    stamp = iso(clock.now())

    def build(new_id: int) -> dict:
        return {"ID": str(new_id), "SITE_ID": "s1", "NAME": name, "DESCRIPTION": _text(fields.get("DESCRIPTION")),
                "DATE_CREATE": stamp, "DATE_UPDATE": stamp, "DATE_ACTIVITY": stamp, "ACTIVE": "Y",
                "VISIBLE": _yn(fields.get("VISIBLE"), "Y"), "OPENED": _yn(fields.get("OPENED")),
                "CLOSED": "N", "SUBJECT_ID": str(_positive_int(fields.get("SUBJECT_ID")) or 1),
                "OWNER_ID": str(ctx.user_id), "KEYWORDS": _text(fields.get("KEYWORDS")),
                "NUMBER_OF_MEMBERS": "1", "INITIATE_PERMS": perms, "PROJECT": _yn(fields.get("PROJECT")),
                "SCRUM_MASTER_ID": str(scrum_master or ""), "IS_EXTRANET": "N",
                "MEMBERS": {str(ctx.user_id): ROLE_OWNER}}

    new_id, _ = record_create(portal=ctx.portal, entity=GROUP, build=build)
    return Outcome(new_id)


def _group_view(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "MEMBERS"}


def sonet_group_get(ctx: Ctx, params: dict) -> Outcome:
    conditions = [c for c in parse_v2_filter(_param(params, "FILTER")) if c.field != "MEMBERS"]
    order = parse_v2_order(_param(params, "ORDER"))
    return Outcome([_group_view(r) for r in _all(ctx, GROUP, conditions, order)])


def sonet_group_user_add(ctx: Ctx, params: dict) -> Outcome:
    group = _group_or_error(ctx, _param(params, "GROUP_ID"))
    users = _user_ids(_param(params, "USER_ID"))
    if not users:
        raise _error("ERROR_CORE", "Wrong user IDs.")
    if group["OWNER_ID"] != str(ctx.user_id) and group["MEMBERS"].get(str(ctx.user_id)) != ROLE_MODERATOR \
            and not ctx.is_admin:
        raise _error("ERROR_CORE", "User has no permissions to add members to the group.")
    added = [u for u in users if str(u) not in group["MEMBERS"]]

    def apply(row: dict) -> dict:
        members = {**row["MEMBERS"], **{str(u): ROLE_MEMBER for u in added}}
        return {**row, "MEMBERS": members, "NUMBER_OF_MEMBERS": str(len(members)), "DATE_UPDATE": iso(clock.now())}

    record_update(portal=ctx.portal, entity=GROUP, record_id=int(group["ID"]), apply=apply)
    return Outcome(added)


def sonet_group_user_get(ctx: Ctx, params: dict) -> Outcome:
    group = _group_or_error(ctx, _param(params, "ID"))
    return Outcome([{"USER_ID": uid, "ROLE": role} for uid, role in sorted(group["MEMBERS"].items(),
                                                                           key=lambda kv: int(kv[0]))])


def sonet_group_update(ctx: Ctx, params: dict) -> Outcome:
    group = _group_or_error(ctx, _param(params, "GROUP_ID"))
    if group["OWNER_ID"] != str(ctx.user_id) and not ctx.is_admin:
        raise _error("ERROR_CORE", "User has no permissions to update the group.")
    changes = {str(k).upper(): v for k, v in params.items() if str(k).upper() != "GROUP_ID"}
    editable = ("NAME", "DESCRIPTION", "KEYWORDS", "VISIBLE", "OPENED", "PROJECT", "INITIATE_PERMS")

    def apply(row: dict) -> dict:
        for key in editable:
            if key in changes:
                row[key] = _yn(changes[key]) if key in ("VISIBLE", "OPENED", "PROJECT") else _text(changes[key])
        row["DATE_UPDATE"] = iso(clock.now())
        return row

    if "NAME" in changes and not _text(changes["NAME"]):
        raise _error("ERROR_CORE", "Group name is not specified.")
    record_update(portal=ctx.portal, entity=GROUP, record_id=int(group["ID"]), apply=apply)
    return Outcome(int(group["ID"]))


# ---------------------------------------------------------------------------- business processes

# The portal's stock templates (a new portal ships these for CRM documents).
TEMPLATES = (
    {"ID": 1, "MODULE_ID": "crm", "ENTITY": "CCrmDocumentDeal", "DOCUMENT_TYPE": "DEAL", "AUTO_EXECUTE": 0,
     "NAME": "Document approval", "PARAMETERS": {"Approver": {"Name": "Approver", "Type": "user",
                                                              "Required": 0, "Multiple": 0}}},
    {"ID": 2, "MODULE_ID": "crm", "ENTITY": "CCrmDocumentLead", "DOCUMENT_TYPE": "LEAD", "AUTO_EXECUTE": 1,
     "NAME": "New lead processing", "PARAMETERS": {}},
)
_DOC_PREFIX = {"CCrmDocumentDeal": ("DEAL_", "deal"), "CCrmDocumentLead": ("LEAD_", "lead"),
               "CCrmDocumentContact": ("CONTACT_", "contact"), "CCrmDocumentCompany": ("COMPANY_", "company")}


def template_list(ctx: Ctx, params: dict) -> Outcome:
    select = _param(params, "select")
    select = [str(s).upper() for s in select] if isinstance(select, list) and select else ["ID"]
    conditions = parse_v2_filter(_param(params, "filter"))
    rows = []
    for tpl in TEMPLATES:
        flat = {k: v for k, v in tpl.items() if k != "PARAMETERS"}
        flat["DOCUMENT_TYPE"] = [tpl["MODULE_ID"], tpl["ENTITY"], tpl["DOCUMENT_TYPE"]]
        if all(str(flat.get(c.field)) == str(c.value) for c in conditions if c.op == "="):
            rows.append({k: flat.get(k) for k in select})
    return Outcome(rows, total=len(rows))


def workflow_start(ctx: Ctx, params: dict) -> Outcome:
    template_id = _positive_int(_param(params, "TEMPLATE_ID"))
    if template_id is None:
        raise _error("ERROR_WRONG_WORKFLOW_ID", "Empty TEMPLATE_ID")
    template = next((t for t in TEMPLATES if t["ID"] == template_id), None)
    if template is None:
        raise _error("ERROR_TEMPLATE_NOT_FOUND", "Template not found")
    document = _param(params, "DOCUMENT_ID")
    document = list(document.values()) if isinstance(document, dict) else document
    if not isinstance(document, list) or len(document) != 3 or not all(isinstance(p, str | int) for p in document):
        raise _error("ERROR_WRONG_DOCUMENT_ID", "Wrong DOCUMENT_ID!")
    module, entity, doc = (str(p) for p in document)
    if (module, entity) != (template["MODULE_ID"], template["ENTITY"]):
        raise _error("ERROR_WRONG_DOCUMENT_ID", "Template does not match the document type")
    prefix, record_entity = _DOC_PREFIX[entity]
    record_id = _positive_int(doc[len(prefix):]) if doc.startswith(prefix) else None
    if record_id is None or record_get(portal=ctx.portal, entity=record_entity, record_id=record_id) is None:
        raise _error("ERROR_DOCUMENT_NOT_FOUND", "Document not found")
    values = _param(params, "PARAMETERS")
    values = values if isinstance(values, dict) else {}
    for name, spec in template["PARAMETERS"].items():
        if spec["Required"] and values.get(name) in (None, ""):
            raise _error("ERROR_WORKFLOW_PARAMETERS", f"Parameter \"{spec['Name']}\" is required")
    workflow_id = f"{secrets.token_hex(7)}.{secrets.randbelow(10**8):08d}"

    def build(new_id: int) -> dict:
        return {"ID": workflow_id, "SEQ": new_id, "MODIFIED": iso(clock.now()), "OWNED_UNTIL": None,
                "MODULE_ID": module, "ENTITY": entity, "DOCUMENT_ID": doc, "STARTED": iso(clock.now()),
                "STARTED_BY": str(ctx.user_id), "TEMPLATE_ID": str(template_id), "PARAMETERS": values}

    record_create(portal=ctx.portal, entity="bp_workflow", build=build)
    return Outcome(workflow_id)


def workflow_instances(ctx: Ctx, params: dict) -> Outcome:
    select = _param(params, "select")
    select = [str(s).upper() for s in select] if isinstance(select, list) and select else \
        ["ID", "MODIFIED", "OWNED_UNTIL", "MODULE_ID", "ENTITY", "DOCUMENT_ID", "STARTED", "STARTED_BY",
         "TEMPLATE_ID"]
    conditions = parse_v2_filter(_param(params, "filter"))
    rows = [r for r in _all(ctx, "bp_workflow")
            if all(str(r.get(c.field)) == str(c.value) for c in conditions if c.op == "=")]
    return Outcome([{k: r.get(k) for k in select} for r in rows], total=len(rows))
