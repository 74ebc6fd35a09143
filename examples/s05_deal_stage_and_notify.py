"""5. Update a deal's stage and notify the responsible user (one chain: the update and the notice)."""

from examples._agent import Agent, main

TITLE = "Move a deal to a new stage and tell the responsible user"
PACKS = ["core", "comms"]


def run(agent: Agent, deal_id: int | None = None, stage: str = "PREPARATION") -> dict:
    if deal_id is None:
        deal_id = int(agent.call("crm.deal.add", {"fields": {"TITLE": "Deal moving on", "STAGE_ID": "NEW"}},
                                 reason="Example: a deal whose stage changes"))
    deal = agent.call("crm.deal.get", {"id": deal_id})
    responsible = int(deal.get("ASSIGNED_BY_ID") or agent.call("user.current")["ID"])
    out = agent.chain([
        {"name": "stage", "method": "crm.deal.update", "params": {"id": deal_id, "fields": {"STAGE_ID": stage}}},
        {"name": "notice", "method": "im.notify.personal.add", "params": {
            "USER_ID": responsible, "TAG": f"deal-{deal_id}-stage",
            "MESSAGE": f"Deal #{deal_id} \"{deal['TITLE']}\" moved from {deal.get('STAGE_ID')} to {stage}."}},
    ], reason=f"Deal #{deal_id} reached {stage}; its owner should know")
    return {"deal_id": deal_id, "stage": agent.call("crm.deal.get", {"id": deal_id})["STAGE_ID"],
            "notified": responsible, "notification_id": int(out["notice"])}


if __name__ == "__main__":
    main(run)
