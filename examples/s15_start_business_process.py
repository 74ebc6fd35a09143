"""15. Start a business process for a document approval on a deal."""

from examples._agent import Agent, main

TITLE = "Start the document approval process on a deal"
PACKS = ["automation", "core"]


def run(agent: Agent, deal_id: int | None = None) -> dict:
    if deal_id is None:
        deal_id = int(agent.call("crm.deal.add", {"fields": {"TITLE": "Contract for approval"}},
                                 reason="Example: a deal whose contract needs approval"))
    templates = agent.call("bizproc.workflow.template.list", {
        "select": ["ID", "NAME", "DOCUMENT_TYPE"], "filter": {"MODULE_ID": "crm", "ENTITY": "CCrmDocumentDeal"}})
    template = next(t for t in templates if t["NAME"] == "Document approval")
    workflow_id = agent.call("bizproc.workflow.start", {
        "TEMPLATE_ID": int(template["ID"]), "DOCUMENT_ID": ["crm", "CCrmDocumentDeal", f"DEAL_{deal_id}"],
        "PARAMETERS": {"Approver": "user_1"}}, reason=f"Approve the contract of deal #{deal_id}")
    running = agent.call("bizproc.workflow.instances", {"select": ["ID", "DOCUMENT_ID", "TEMPLATE_ID"],
                                                        "filter": {"DOCUMENT_ID": f"DEAL_{deal_id}"}})
    return {"deal_id": deal_id, "workflow_id": workflow_id, "running": [w["ID"] for w in running]}


if __name__ == "__main__":
    main(run)
