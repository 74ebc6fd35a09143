"""6. Escalate deals that stay in a stage too long with a task."""

from examples._agent import Agent, main

TITLE = "Escalate deals stuck in a stage with a task"
PACKS = ["core"]


def run(agent: Agent, stage: str = "NEW", before: str = "2100-01-01T00:00:00") -> dict:
    """`before`: deals in `stage` not modified since then are stuck (a real run passes now - N days)."""
    me = agent.call("user.current")
    stuck = agent.list_all("crm.deal.list", {"filter": {"STAGE_ID": stage, "<DATE_MODIFY": before},
                                             "select": ["ID", "TITLE", "ASSIGNED_BY_ID"]})
    if not stuck:
        return {"stuck": 0, "tasks": []}
    steps = [{"name": f"esc_{deal['ID']}", "method": "tasks.task.add", "params": {"fields": {
        "TITLE": f"Escalation: deal {deal['TITLE']} is stuck in {stage}", "PRIORITY": 2,
        "RESPONSIBLE_ID": int(deal.get("ASSIGNED_BY_ID") or me["ID"]), "UF_CRM_TASK": [f"D_{deal['ID']}"]}}}
        for deal in stuck[:50]]
    out = agent.chain(steps, reason=f"{len(steps)} deals have stayed in {stage} too long")
    return {"stuck": len(stuck), "tasks": [int(v["task"]["id"]) for v in out.values()]}


if __name__ == "__main__":
    main(run)
