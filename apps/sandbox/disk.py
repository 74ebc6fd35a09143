"""Drive (`disk.*`, scope `disk`) as far as uploading a file and attaching it to a task needs:
`disk.storage.getlist` (each user's storage, made on first sight), `disk.folder.get`,
`disk.folder.uploadfile` (content inline as `fileContent: [name, base64]`), `disk.file.get`,
`tasks.task.files.attach` (scope `task`) and `disk.attachedObject.get`.

Errors as the disk module's REST layer answers them: `ERROR_ARGUMENT` (400) for a missing or
malformed parameter, `ERROR_NOT_FOUND` (404) for an unknown object, `ERROR_CORE` (400) for a name
already taken in the folder.
"""

import base64
import binascii

from . import clock
from .errors import SandboxError
from .methods import Ctx, Outcome, _param, _positive_int, iso
from .records import Condition, record_create, record_get, record_query, record_update

OBJECT = "disk_object"
STORAGE = "disk_storage"
ATTACHED = "disk_attached"
MAX_FILE_BYTES = 10 * 1024 * 1024  # the sandbox keeps sizes and names only, but refuses huge bodies
TASK_CONNECTOR = "Bitrix\\Tasks\\Integration\\Disk\\Connector\\Task"


def _argument(name: str) -> SandboxError:
    return SandboxError("ERROR_ARGUMENT", f"Error: required parameter {name}", status=400)


def _not_found(entity_id) -> SandboxError:
    return SandboxError("ERROR_NOT_FOUND", f"Could not find entity with id '{entity_id}'", status=404)


def _base(ctx: Ctx) -> str:
    return f"https://{ctx.portal.slug}.sandbox.local"


def _storage_for(ctx: Ctx, user_id: int) -> dict:
    rows, _ = record_query(portal=ctx.portal, entity=STORAGE, conditions=[Condition("ENTITY_ID", "=", str(user_id))],
                           order=[], offset=0, limit=1, count=False)
    if rows:
        return rows[0]
    stamp = iso(clock.now())
    root_id, _ = record_create(portal=ctx.portal, entity=OBJECT, build=lambda new_id: {
        "ID": str(new_id), "NAME": f"Sandbox User {user_id}", "CODE": None, "STORAGE_ID": None, "TYPE": "folder",
        "REAL_OBJECT_ID": str(new_id), "PARENT_ID": None, "DELETED_TYPE": "0", "CREATE_TIME": stamp,
        "UPDATE_TIME": stamp, "DELETE_TIME": None, "CREATED_BY": str(user_id), "UPDATED_BY": str(user_id),
        "DELETED_BY": "0"})
    _, storage = record_create(portal=ctx.portal, entity=STORAGE, build=lambda new_id: {
        "ID": str(new_id), "NAME": f"Sandbox User {user_id}", "CODE": None, "MODULE_ID": "disk",
        "ENTITY_TYPE": "user", "ENTITY_ID": str(user_id), "ROOT_OBJECT_ID": str(root_id)})
    record_update(portal=ctx.portal, entity=OBJECT, record_id=root_id,
                  apply=lambda row: {**row, "STORAGE_ID": storage["ID"]})
    return storage


def storage_getlist(ctx: Ctx, params: dict) -> Outcome:
    _storage_for(ctx, ctx.user_id)
    rows, total = record_query(portal=ctx.portal, entity=STORAGE, conditions=[], order=[], offset=0, limit=50)
    return Outcome(rows, total=total)


def _object(ctx: Ctx, params: dict, kind: str) -> dict:
    raw = _param(params, "id")
    if raw in (None, ""):
        raise _argument("id")
    object_id = _positive_int(raw)
    row = record_get(portal=ctx.portal, entity=OBJECT, record_id=object_id) if object_id else None
    if row is None or row["TYPE"] != kind or row["DELETED_TYPE"] != "0":
        raise _not_found(raw)
    return row


def _folder_view(ctx: Ctx, row: dict) -> dict:
    return {**row, "DETAIL_URL": f"{_base(ctx)}/company/personal/user/{row['CREATED_BY']}/disk/path/"}


def _file_view(ctx: Ctx, row: dict) -> dict:
    return {**row, "DOWNLOAD_URL": f"{_base(ctx)}/rest/download.json?id={row['ID']}",
            "DETAIL_URL": f"{_base(ctx)}/company/personal/user/{row['CREATED_BY']}/disk/file/{row['NAME']}"}


def folder_get(ctx: Ctx, params: dict) -> Outcome:
    return Outcome(_folder_view(ctx, _object(ctx, params, "folder")))


def file_get(ctx: Ctx, params: dict) -> Outcome:
    return Outcome(_file_view(ctx, _object(ctx, params, "file")))


def _content(params: dict) -> tuple[str, int]:
    raw = _param(params, "fileContent")
    raw = list(raw.values()) if isinstance(raw, dict) else raw
    if not isinstance(raw, list) or len(raw) != 2 or not all(isinstance(p, str) for p in raw) or not raw[0].strip():
        raise _argument("fileContent")
    try:
        body = base64.b64decode(raw[1], validate=True)
    except (binascii.Error, ValueError):
        raise SandboxError("ERROR_ARGUMENT", "Error: fileContent must be [name, base64 content]", status=400) from None
    if len(body) > MAX_FILE_BYTES:
        raise SandboxError("ERROR_ARGUMENT", "Error: the file is too large", status=400)
    return raw[0].strip(), len(body)


def _unique(name: str, taken: set[str]) -> str:
    if name.lower() not in taken:
        return name
    stem, dot, ext = name.rpartition(".")
    stem, ext = (stem, f".{ext}") if dot and stem else (name, "")
    n = 1
    while f"{stem} ({n}){ext}".lower() in taken:
        n += 1
    return f"{stem} ({n}){ext}"


def folder_uploadfile(ctx: Ctx, params: dict) -> Outcome:
    folder = _object(ctx, params, "folder")
    data = _param(params, "data")
    if not isinstance(data, dict) or not isinstance(data.get("NAME"), str | type(None)):
        raise _argument("data")
    content_name, size = _content(params)
    name = (data.get("NAME") or content_name).strip()
    if not name or any(c in name for c in "/\\:*?\"<>|"):
        raise SandboxError("ERROR_ARGUMENT", "Error: invalid file name", status=400)
    siblings, _ = record_query(portal=ctx.portal, entity=OBJECT, conditions=[
        Condition("PARENT_ID", "=", folder["ID"]), Condition("DELETED_TYPE", "=", "0")], order=[], offset=0,
        limit=10**6, count=False)
    taken = {s["NAME"].lower() for s in siblings}
    if name.lower() in taken:
        if str(_param(params, "generateUniqueName")).strip().lower() not in ("true", "y", "1"):
            raise SandboxError("ERROR_CORE", "A file or folder with this name already exists in the folder.",
                               status=400)
        name = _unique(name, taken)
    stamp = iso(clock.now())

    def build(new_id: int) -> dict:
        return {"ID": str(new_id), "NAME": name, "CODE": None, "STORAGE_ID": folder["STORAGE_ID"], "TYPE": "file",
                "PARENT_ID": folder["ID"], "DELETED_TYPE": "0", "GLOBAL_CONTENT_VERSION": "1",
                "FILE_ID": str(new_id), "SIZE": str(size), "CREATE_TIME": stamp, "UPDATE_TIME": stamp,
                "DELETE_TIME": None, "CREATED_BY": str(ctx.user_id), "UPDATED_BY": str(ctx.user_id),
                "DELETED_BY": "0"}

    _, row = record_create(portal=ctx.portal, entity=OBJECT, build=build)
    return Outcome(_file_view(ctx, row))


def task_files_attach(ctx: Ctx, params: dict) -> Outcome:
    task_id = _positive_int(_param(params, "taskId"))
    file_id = _positive_int(_param(params, "fileId"))
    if task_id is None or file_id is None:
        raise SandboxError("ERROR_CORE", "Wrong arguments: taskId and fileId must be positive integers",
                           status=400)
    if record_get(portal=ctx.portal, entity="task", record_id=task_id) is None:
        raise SandboxError("ERROR_CORE", "Task not found or access denied", status=400)
    row = record_get(portal=ctx.portal, entity=OBJECT, record_id=file_id)
    if row is None or row["TYPE"] != "file":
        raise SandboxError("ERROR_CORE", "File not found", status=400)
    attached_id, _ = record_create(portal=ctx.portal, entity=ATTACHED, build=lambda new_id: {
        "ID": str(new_id), "OBJECT_ID": row["ID"], "MODULE_ID": "tasks", "ENTITY_TYPE": TASK_CONNECTOR,
        "ENTITY_ID": str(task_id), "CREATE_TIME": iso(clock.now()), "CREATED_BY": str(ctx.user_id)})
    return Outcome({"attachmentId": attached_id})


def attached_object_get(ctx: Ctx, params: dict) -> Outcome:
    raw = _param(params, "id")
    if raw in (None, ""):
        raise _argument("id")
    attached_id = _positive_int(raw)
    row = record_get(portal=ctx.portal, entity=ATTACHED, record_id=attached_id) if attached_id else None
    if row is None:
        raise _not_found(raw)
    file = record_get(portal=ctx.portal, entity=OBJECT, record_id=int(row["OBJECT_ID"])) or {}
    return Outcome({**row, "DOWNLOAD_URL": f"{_base(ctx)}/rest/download.json?attachedId={row['ID']}",
                    "NAME": file.get("NAME"), "SIZE": file.get("SIZE")})

