"""7. Build the daily list of deals without active tasks (reads only: no approval)."""

from examples._agent import Agent, main

TITLE = "Daily list of deals without active tasks"
PACKS = ["core"]


def run(agent: Agent) -> dict:
    deals = agent.list_all("crm.deal.list", {"filter": {"CLOSED": "N"}, "select": ["ID", "TITLE"]})
    tasks = agent.list_all("tasks.task.list", {"filter": {"<STATUS": 5}, "select": ["ID", "UF_CRM_TASK"]})
    covered = {ref for task in tasks for ref in (task.get("ufCrmTask") or [])}
    orphans = [d for d in deals if f"D_{d['ID']}" not in covered]
    return {"open_deals": len(deals), "without_tasks": [{"id": int(d["ID"]), "title": d["TITLE"]} for d in orphans]}


if __name__ == "__main__":
    main(run)
