"""4. Create a deal when a lead reaches the qualification threshold."""

from examples._agent import Agent, main

TITLE = "Create a deal for a qualified lead"
PACKS = ["core"]


def run(agent: Agent, lead_id: int | None = None, threshold: float = 1000) -> dict:
    if lead_id is None:
        lead_id = int(agent.call("crm.lead.add", {"fields": {"TITLE": "Qualified lead", "OPPORTUNITY": 2500}},
                                 reason="Example: a lead that qualifies"))
    lead = agent.call("crm.lead.get", {"id": lead_id})
    if float(lead["OPPORTUNITY"]) < threshold:
        return {"lead_id": lead_id, "deal_id": None, "qualified": False}
    out = agent.chain([
        {"name": "deal", "method": "crm.deal.add", "params": {"fields": {
            "TITLE": f"Deal: {lead['TITLE']}", "OPPORTUNITY": lead["OPPORTUNITY"], "CURRENCY_ID": lead["CURRENCY_ID"],
            "COMMENTS": f"From lead {lead_id}", "SOURCE_ID": lead.get("SOURCE_ID") or "OTHER"}}},
        {"name": "lead", "method": "crm.lead.update", "params": {"id": lead_id, "fields": {
            "STATUS_ID": "CONVERTED", "COMMENTS": "Deal $result[deal] created"}}},
    ], reason=f"Lead {lead_id} reached {threshold}: open a deal")
    return {"lead_id": lead_id, "deal_id": int(out["deal"]), "qualified": True}


if __name__ == "__main__":
    main(run)
