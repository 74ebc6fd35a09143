"""22. Notify a chat on task changes: tasks changed since a moment, one message each, one chain."""

from datetime import UTC, datetime, timedelta

from examples._agent import Agent, main

TITLE = "Post task changes into a team chat"
PACKS = ["core", "comms"]


def run(agent: Agent, chat_id: int | None = None) -> dict:
    since = (datetime.now(UTC) - timedelta(minutes=5)).isoformat(timespec="seconds")
    if chat_id is None:
        chat_id = int(agent.call("im.chat.add", {"TITLE": "Task changes", "USERS": [1]},
                                 reason="Example: the chat that follows task changes"))
    task_id = int(agent.call("tasks.task.add", {"fields": {"TITLE": "Prepare the release notes",
                                                           "RESPONSIBLE_ID": 1}},
                             reason="Example: a task that changes")["task"]["id"])
    agent.call("tasks.task.update", {"taskId": task_id, "fields": {"PRIORITY": 2}}, reason="Raise its priority")
    changed = agent.list_all("tasks.task.list", {"filter": {">=CHANGED_DATE": since},
                                                 "select": ["ID", "TITLE", "STATUS", "CHANGED_DATE"]})
    steps = [{"name": f"msg_{task['id']}", "method": "im.message.add", "params": {
        "DIALOG_ID": f"chat{chat_id}",
        "MESSAGE": f"Task #{task['id']} \"{task['title']}\" changed (status {task['status']})."}}
        for task in changed[:50]]
    out = agent.chain(steps, reason=f"{len(steps)} task changes for the team chat") if steps else {}
    return {"chat_id": chat_id, "changed": [int(t["id"]) for t in changed], "messages": len(out)}


if __name__ == "__main__":
    main(run)
