"""12. System notifications for SLA breaches: open tasks past their deadline, one notice each."""

from datetime import UTC, datetime, timedelta

from examples._agent import Agent, main

TITLE = "Tell responsible users about tasks that broke their SLA"
PACKS = ["core", "comms"]


def run(agent: Agent) -> dict:
    me = int(agent.call("user.current")["ID"])
    past = (datetime.now(UTC) - timedelta(days=2)).isoformat(timespec="seconds")
    agent.call("tasks.task.add", {"fields": {"TITLE": "Answer ticket #512 (SLA 24 h)", "RESPONSIBLE_ID": me,
                                             "DEADLINE": past}}, reason="Example: a ticket past its SLA")
    now = datetime.now(UTC).isoformat(timespec="seconds")
    overdue = agent.list_all("tasks.task.list", {"filter": {"<DEADLINE": now, "!STATUS": 5},
                                                 "select": ["ID", "TITLE", "RESPONSIBLE_ID", "DEADLINE"]})
    if not overdue:
        return {"overdue": 0, "notices": []}
    steps = [{"name": f"sla_{task['id']}", "method": "im.notify.system.add", "params": {
        "USER_ID": int(task["responsibleId"]), "TAG": f"sla-task-{task['id']}",
        "MESSAGE": f"SLA breached: task #{task['id']} \"{task['title']}\" was due {task['deadline']}."}}
        for task in overdue[:50]]
    out = agent.chain(steps, reason=f"{len(steps)} tasks are past their deadline")
    return {"overdue": len(overdue), "notices": [int(v) for v in out.values()]}


if __name__ == "__main__":
    main(run)
