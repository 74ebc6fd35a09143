"""25. Upload a file to Drive and attach it to a task (the file's bytes go inline, base64)."""

import base64

from examples._agent import Agent, main

TITLE = "Upload a file to Drive and attach it to a task"
PACKS = ["content", "core"]


def run(agent: Agent, task_id: int | None = None, name: str = "acme-quote.txt",
        content: bytes = b"Quote for ACME: 20 seats, 12 months, 15% discount.\n") -> dict:
    if task_id is None:
        task_id = int(agent.call("tasks.task.add", {"fields": {"TITLE": "Send the quote to ACME",
                                                               "RESPONSIBLE_ID": 1}},
                                 reason="Example: a task that needs the quote attached")["task"]["id"])
    me = int(agent.call("user.current")["ID"])
    storages = agent.call("disk.storage.getlist", {"filter": {"ENTITY_TYPE": "user"}})
    storage = next(s for s in storages if s["ENTITY_TYPE"] == "user" and int(s["ENTITY_ID"]) == me)
    file = agent.call("disk.folder.uploadfile", {
        "id": int(storage["ROOT_OBJECT_ID"]), "data": {"NAME": name}, "generateUniqueName": True,
        "fileContent": [name, base64.b64encode(content).decode()]}, reason=f"Upload {name} to my Drive")
    attached = agent.call("tasks.task.files.attach", {"taskId": task_id, "fileId": int(file["ID"])},
                          reason=f"Attach {file['NAME']} to task #{task_id}")
    got = agent.call("disk.attachedObject.get", {"id": attached["attachmentId"]})
    return {"task_id": task_id, "file_id": int(file["ID"]), "name": file["NAME"], "size": int(file["SIZE"]),
            "attached_to": (got["MODULE_ID"], int(got["ENTITY_ID"])), "attachment_id": attached["attachmentId"]}


if __name__ == "__main__":
    main(run)
