"""Drive uploads with task attachments (apps/sandbox/disk.py) and scrum (apps/sandbox/scrum.py):
shapes, one documented error each, scopes, and bad input answered like a portal, never a 500."""

import base64

import pytest

from apps.sandbox.services import sandbox_webhook_create
from tests.integration.sandbox.conftest import Rest
from tests.integration.sandbox.test_workspace import err, ok

pytestmark = pytest.mark.django_db


def _root(rest) -> int:
    (storage,) = ok(rest.call("disk.storage.getlist"))
    assert storage["ENTITY_TYPE"] == "user" and storage["ENTITY_ID"] == "1" and storage["MODULE_ID"] == "disk"
    return int(storage["ROOT_OBJECT_ID"])


def _upload(rest, folder: int, name: str = "a.txt", body: bytes = b"hello", **extra):
    return rest.call("disk.folder.uploadfile", {"id": folder, "data": {"NAME": name},
                                                "fileContent": [name, base64.b64encode(body).decode()], **extra})


def test_upload_and_attach(rest):
    root = _root(rest)
    assert _root(rest) == root  # the storage is made once
    folder = ok(rest.call("disk.folder.get", {"id": root}))
    assert folder["TYPE"] == "folder" and folder["ID"] == str(root)
    file = ok(_upload(rest, root))
    assert file["TYPE"] == "file" and file["NAME"] == "a.txt" and file["SIZE"] == "5"
    assert file["PARENT_ID"] == str(root) and file["DOWNLOAD_URL"].startswith("https://")
    again = ok(_upload(rest, root, generateUniqueName=True))
    assert again["NAME"] == "a (1).txt"
    assert ok(rest.call("disk.file.get", {"id": file["ID"]}))["NAME"] == "a.txt"
    task_id = int(ok(rest.call("tasks.task.add", {"fields": {"TITLE": "t", "RESPONSIBLE_ID": 1}}))["task"]["id"])
    attached = ok(rest.call("tasks.task.files.attach", {"taskId": task_id, "fileId": file["ID"]}))
    assert set(attached) == {"attachmentId"}
    got = ok(rest.call("disk.attachedObject.get", {"id": attached["attachmentId"]}))
    assert got["OBJECT_ID"] == file["ID"] and got["MODULE_ID"] == "tasks" and got["ENTITY_ID"] == str(task_id)


def test_disk_errors(rest):
    root = _root(rest)
    ok(_upload(rest, root))
    assert err(_upload(rest, 987654), "ERROR_NOT_FOUND", 404) == "Could not find entity with id '987654'"
    err(rest.call("disk.folder.uploadfile", {"data": {"NAME": "x"}}), "ERROR_ARGUMENT")
    err(rest.call("disk.folder.uploadfile", {"id": root, "data": {"NAME": "x"}, "fileContent": "x"}),
        "ERROR_ARGUMENT")
    err(rest.call("disk.folder.uploadfile", {"id": root, "data": {"NAME": "x"}, "fileContent": ["x", "@@"]}),
        "ERROR_ARGUMENT")
    err(_upload(rest, root, name="a/b"), "ERROR_ARGUMENT")
    err(_upload(rest, root), "ERROR_CORE")  # the name is taken and no unique name was asked for
    err(rest.call("disk.file.get", {"id": root}), "ERROR_NOT_FOUND", 404)  # a folder is not a file
    err(rest.call("disk.attachedObject.get", {"id": "x"}), "ERROR_NOT_FOUND", 404)
    err(rest.call("tasks.task.files.attach", {"taskId": 999, "fileId": 1}), "ERROR_CORE")
    err(rest.call("tasks.task.files.attach", {"taskId": "a", "fileId": 1}), "ERROR_CORE")


def _scrum(rest, *, scrum: bool = True) -> int:
    fields = {"NAME": f"Team {'scrum' if scrum else 'plain'}", "PROJECT": "Y"}
    if scrum:
        fields["SCRUM_MASTER_ID"] = 1
    return ok(rest.call("sonet_group.create", fields))


def test_scrum_board(rest):
    group = _scrum(rest)
    backlog = ok(rest.call("tasks.api.scrum.backlog.get", {"id": group}))
    assert backlog["groupId"] == group and backlog["entityType"] == "backlog"
    assert ok(rest.call("tasks.api.scrum.backlog.get", {"id": group}))["id"] == backlog["id"]
    epic = ok(rest.call("tasks.api.scrum.epic.add", {"fields": {"groupId": group, "name": "Offline"}}))
    assert set(epic) == {"id", "groupId", "name", "description", "createdBy", "modifiedBy", "color"}
    sprint = ok(rest.call("tasks.api.scrum.sprint.add", {"fields": {"groupId": group, "name": "S1"}}))
    assert sprint["entityType"] == "sprint" and sprint["status"] == "planned"
    task_id = int(ok(rest.call("tasks.task.add", {"fields": {"TITLE": "t", "GROUP_ID": group,
                                                             "RESPONSIBLE_ID": 1}}))["task"]["id"])
    assert ok(rest.call("tasks.api.scrum.task.update", {"id": task_id, "fields": {
        "entityId": sprint["id"], "epicId": epic["id"], "storyPoints": "5"}})) is True
    scrum_task = ok(rest.call("tasks.api.scrum.task.get", {"id": task_id}))
    assert (scrum_task["entityId"], scrum_task["epicId"], scrum_task["storyPoints"]) == (sprint["id"], epic["id"], "5")
    assert ok(rest.call("tasks.api.scrum.sprint.start", {"id": sprint["id"]}))["status"] == "active"
    stages = ok(rest.call("tasks.api.scrum.kanban.getStages", {"sprintId": sprint["id"]}))
    assert [s["type"] for s in stages] == ["NEW", "WORK", "FINISH"]
    assert ok(rest.call("tasks.api.scrum.kanban.addTask", {"sprintId": sprint["id"], "taskId": task_id,
                                                           "stageId": stages[-1]["id"]})) is True
    task = ok(rest.call("tasks.task.get", {"taskId": task_id}))["task"]
    assert task["status"] == "5" and task["closedDate"]


def test_scrum_errors(rest):
    plain, group = _scrum(rest, scrum=False), _scrum(rest)
    assert err(rest.call("tasks.api.scrum.backlog.get", {"id": plain}), "ERROR_CORE") == "Group is not a scrum"
    err(rest.call("tasks.api.scrum.backlog.get", {"id": "x"}), "ERROR_CORE")
    err(rest.call("tasks.api.scrum.epic.add", {"fields": "x"}), "ERROR_CORE")
    err(rest.call("tasks.api.scrum.epic.add", {"fields": {"groupId": group}}), "ERROR_CORE")
    err(rest.call("tasks.api.scrum.sprint.add", {"fields": {"groupId": group, "name": "S", "status": "odd"}}),
        "ERROR_CORE")
    err(rest.call("tasks.api.scrum.sprint.add", {"fields": {"groupId": group, "name": "S", "dateStart": "x"}}),
        "ERROR_CORE")
    sprint = ok(rest.call("tasks.api.scrum.sprint.add", {"fields": {"groupId": group, "name": "S"}}))
    ok(rest.call("tasks.api.scrum.sprint.start", {"id": sprint["id"]}))
    err(rest.call("tasks.api.scrum.sprint.start", {"id": sprint["id"]}), "ERROR_CORE")
    other = ok(rest.call("tasks.task.add", {"fields": {"TITLE": "elsewhere", "RESPONSIBLE_ID": 1}}))["task"]["id"]
    err(rest.call("tasks.api.scrum.task.update", {"id": other, "fields": {"entityId": sprint["id"]}}), "ERROR_CORE")
    err(rest.call("tasks.api.scrum.kanban.addTask", {"sprintId": sprint["id"], "taskId": other, "stageId": 1}),
        "ERROR_CORE")
    err(rest.call("tasks.api.scrum.kanban.getStages", {"sprintId": 9999}), "ERROR_CORE")


@pytest.mark.parametrize(("method", "scope"), [("disk.folder.uploadfile", "disk"),
                                               ("tasks.api.scrum.sprint.add", "task")])
def test_scopes(client, sb_portal, method, scope):
    user_id, code = sandbox_webhook_create(portal=sb_portal, scopes=["crm"], code="crmonly")
    err(Rest(client, sb_portal, user_id, code).call(method, {}), "insufficient_scope", 403)
    user_id, code = sandbox_webhook_create(portal=sb_portal, scopes=[scope], code="withscope")
    answer = Rest(client, sb_portal, user_id, code).call(method, {})
    assert answer.status_code in (400, 404) and answer.json()["error"] != "insufficient_scope"
