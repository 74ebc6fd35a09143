"""18. A guarded bulk update: one batch of updates, checked by dry run, approved once."""

from examples._agent import Agent, main

TITLE = "Guarded bulk update through one batch"
PACKS = ["core"]


def run(agent: Agent, source: str = "OTHER", new_source: str = "WEB") -> dict:
    leads = agent.list_all("crm.lead.list", {"filter": {"SOURCE_ID": source}, "select": ["ID"]}, limit=50)
    if not leads:
        return {"updated": 0}
    steps = [{"name": f"lead_{lead['ID']}", "method": "crm.lead.update",
              "params": {"id": int(lead["ID"]), "fields": {"SOURCE_ID": new_source}}} for lead in leads]
    preview = agent.client.submit(agent.portal, steps=steps, dry_run=True)
    if not preview["allowed"]:
        return {"updated": 0, "refused": preview["reasons"]}
    agent.chain(steps, reason=f"Clean-up: {len(steps)} leads from {source} are really from {new_source}")
    return {"updated": len(steps), "would_be": preview["would_be"], "approvals": preview["approvals_required"]}


if __name__ == "__main__":
    main(run)
