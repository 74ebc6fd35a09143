"""21. Trigger a workflow from a CRM event: each new lead (ONCRMLEADADD in the plane's event feed)
gets the portal's "New lead processing" business process, started in one chain.

The plane receives the portal's events (an outgoing webhook or the app's handler); the agent only
reads its feed, which shows it the events its grants can read (crm.lead.get here)."""

from examples._agent import Agent, main

TITLE = "Start a business process for every new lead"
PACKS = ["core", "automation"]


def run(agent: Agent, new_leads: int = 2) -> dict:
    cursor = agent.feed_cursor()
    # the trigger: leads arriving from a web form (created here so the example is self-contained)
    created = agent.chain([{"name": f"lead_{n}", "method": "crm.lead.add", "params": {"fields": {
        "TITLE": f"Web form lead {n}", "SOURCE_ID": "WEB"}}} for n in range(1, new_leads + 1)],
        reason="Example: leads from the web form")
    expected = {int(v) for v in created.values()}
    events, cursor = agent.events_since(cursor, event="ONCRMLEADADD",
                                        until=lambda found: expected <= agent.object_ids(found))
    lead_ids = sorted(agent.object_ids(events))  # every new lead the feed told of, ours included
    templates = agent.call("bizproc.workflow.template.list", {
        "select": ["ID", "NAME"], "filter": {"MODULE_ID": "crm", "ENTITY": "CCrmDocumentLead"}})
    template_id = int(next(t["ID"] for t in templates if t["NAME"] == "New lead processing"))
    started = agent.chain([{"name": f"bp_{lead_id}", "method": "bizproc.workflow.start", "params": {
        "TEMPLATE_ID": template_id, "DOCUMENT_ID": ["crm", "CCrmDocumentLead", f"LEAD_{lead_id}"]}}
        for lead_id in lead_ids], reason=f"{len(lead_ids)} new leads need the lead process") if lead_ids else {}
    return {"created": sorted(expected), "leads": lead_ids, "workflows": sorted(started.values()), "cursor": cursor}


if __name__ == "__main__":
    main(run)
