"""3. Convert high-score leads into prioritised follow-up tasks (one chain, one approval)."""

from examples._agent import Agent, main

TITLE = "Turn high-score leads into prioritised follow-up tasks"
PACKS = ["core"]
THRESHOLD = 5000  # the lead's OPPORTUNITY stands in for its score


def run(agent: Agent, threshold: int = THRESHOLD) -> dict:
    me = agent.call("user.current")
    leads = agent.list_all("crm.lead.list", {"filter": {">=OPPORTUNITY": threshold},
                                             "select": ["ID", "TITLE", "OPPORTUNITY"]})
    if not leads:
        return {"leads": 0, "tasks": []}
    steps = [{"name": f"task_{lead['ID']}", "method": "tasks.task.add", "params": {"fields": {
        "TITLE": f"Follow up: {lead['TITLE']}", "RESPONSIBLE_ID": int(me["ID"]),
        "PRIORITY": 2 if float(lead["OPPORTUNITY"]) >= 2 * threshold else 1,
        "UF_CRM_TASK": [f"L_{lead['ID']}"]}}} for lead in leads[:50]]
    created = agent.chain(steps, reason=f"{len(steps)} leads scored {threshold} or more need a follow-up")
    return {"leads": len(leads), "tasks": [int(out["task"]["id"]) for out in created.values()]}


if __name__ == "__main__":
    main(run)
