"""8. Write an AI-generated call summary into the CRM entity's comments."""

from examples._agent import Agent, main

TITLE = "Write a call summary into a deal's comments"
PACKS = ["core"]


def run(agent: Agent, deal_id: int | None = None, summary: str | None = None) -> dict:
    if deal_id is None:
        deal_id = int(agent.call("crm.deal.add", {"fields": {"TITLE": "Deal with a call"}},
                                 reason="Example: a deal that had a call"))
    summary = summary or "Call summary: the client wants 20 seats from March; send the quote by Friday."
    deal = agent.call("crm.deal.get", {"id": deal_id})
    comments = ((deal.get("COMMENTS") or "") + "\n" + summary).strip()
    agent.call("crm.deal.update", {"id": deal_id, "fields": {"COMMENTS": comments}},
               reason="Record the summary of today's call")
    return {"deal_id": deal_id, "comments": agent.call("crm.deal.get", {"id": deal_id})["COMMENTS"]}


if __name__ == "__main__":
    main(run)
