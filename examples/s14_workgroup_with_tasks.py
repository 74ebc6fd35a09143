"""14. A workgroup with its execution tasks: the group first, then its tasks in one chain."""

import secrets

from examples._agent import Agent, main

TITLE = "Create a project workgroup with its execution tasks"
PACKS = ["collab", "core"]
TASKS = ("Kick-off meeting", "Requirements", "Build", "Acceptance")


def run(agent: Agent, name: str | None = None, tasks: tuple[str, ...] = TASKS) -> dict:
    name = name or f"Website relaunch {secrets.token_hex(2)}"
    group_id = int(agent.call("sonet_group.create", {
        "NAME": name, "DESCRIPTION": "Relaunch of the public website", "VISIBLE": "Y", "OPENED": "N",
        "INITIATE_PERMS": "E", "PROJECT": "Y"}, reason=f"Workgroup for {name}"))
    steps = [{"name": f"task_{n}", "method": "tasks.task.add", "params": {"fields": {
        "TITLE": title, "GROUP_ID": group_id, "RESPONSIBLE_ID": 1}}} for n, title in enumerate(tasks, start=1)]
    created = agent.chain(steps, reason=f"Execution tasks of {name}")
    in_group = agent.list_all("tasks.task.list", {"filter": {"GROUP_ID": group_id}, "select": ["ID", "GROUP_ID"]})
    return {"group_id": group_id, "tasks": [int(out["task"]["id"]) for out in created.values()],
            "in_group": len(in_group)}


if __name__ == "__main__":
    main(run)
