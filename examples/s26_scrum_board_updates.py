"""26. Scrum board updates from an external trigger: a CI build finished, so its tasks move to Done.

The set-up (a scrum team, an epic, estimated backlog tasks, a started sprint) is what a team has
already; the trigger part is the last chain: each task the build closed goes to the sprint's
FINISH stage."""

import secrets

from examples._agent import Agent, main

TITLE = "Move scrum tasks on the sprint board when a build finishes"
PACKS = ["collab", "boards", "core"]


def _setup(agent: Agent) -> dict:
    me = int(agent.call("user.current")["ID"])
    group_id = int(agent.call("sonet_group.create", {
        "NAME": f"Mobile app scrum {secrets.token_hex(2)}", "PROJECT": "Y", "SCRUM_MASTER_ID": me,
        "VISIBLE": "Y", "OPENED": "N"}, reason="Example: the scrum team's workgroup"))
    epic = agent.call("tasks.api.scrum.epic.add", {"fields": {"groupId": group_id, "name": "Offline mode"}},
                      reason="Epic for the offline work")
    backlog = agent.call("tasks.api.scrum.backlog.get", {"id": group_id})
    tasks = agent.chain([{"name": f"t{n}", "method": "tasks.task.add", "params": {"fields": {
        "TITLE": title, "GROUP_ID": group_id, "RESPONSIBLE_ID": me}}}
        for n, title in enumerate(("Cache API answers", "Sync queue", "Conflict banner"), start=1)],
        reason="Backlog items of the epic")
    task_ids = [int(out["task"]["id"]) for out in tasks.values()]
    sprint = agent.call("tasks.api.scrum.sprint.add", {"fields": {"groupId": group_id, "name": "Sprint 1"}},
                        reason="Plan sprint 1")
    agent.chain([{"name": f"plan_{t}", "method": "tasks.api.scrum.task.update", "params": {"id": t, "fields": {
        "entityId": sprint["id"], "epicId": epic["id"], "storyPoints": str(points)}}}
        for t, points in zip(task_ids, (3, 5, 2), strict=True)], reason="Estimate the items and put them in sprint 1")
    agent.call("tasks.api.scrum.sprint.start", {"id": sprint["id"]}, reason="Start sprint 1")
    return {"group_id": group_id, "backlog_id": backlog["id"], "sprint_id": sprint["id"], "tasks": task_ids}


def run(agent: Agent, build: dict | None = None) -> dict:
    board = _setup(agent)
    build = build or {"status": "passed", "closes": board["tasks"][:2]}  # what the CI webhook says
    if build["status"] != "passed":
        return {**board, "moved": []}
    stages = agent.call("tasks.api.scrum.kanban.getStages", {"sprintId": board["sprint_id"]})
    done = next(s for s in stages if s["type"] == "FINISH")
    agent.chain([{"name": f"done_{t}", "method": "tasks.api.scrum.kanban.addTask", "params": {
        "sprintId": board["sprint_id"], "taskId": t, "stageId": done["id"]}} for t in build["closes"]],
        reason=f"The build closed {len(build['closes'])} tasks")
    closed = agent.list_all("tasks.task.list", {"filter": {"GROUP_ID": board["group_id"], "STATUS": 5},
                                                "select": ["ID"]})
    points = {t: agent.call("tasks.api.scrum.task.get", {"id": t})["storyPoints"] for t in board["tasks"]}
    return {**board, "moved": build["closes"], "closed": sorted(int(t["id"]) for t in closed), "points": points}


if __name__ == "__main__":
    main(run)
