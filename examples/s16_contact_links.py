"""16. Attach a contact to a deal and keep the link in sync."""

from examples._agent import Agent, main

TITLE = "Attach a contact to a deal and keep the link in sync"
PACKS = ["core"]


def run(agent: Agent) -> dict:
    out = agent.chain([
        {"name": "contact", "method": "crm.contact.add", "params": {"fields": {
            "NAME": "Jon", "LAST_NAME": "Berg", "EMAIL": [{"VALUE": "jon@example.com", "VALUE_TYPE": "WORK"}]}}},
        {"name": "deal", "method": "crm.deal.add", "params": {"fields": {
            "TITLE": "Deal for Jon", "CONTACT_ID": "$result[contact]"}}},
    ], reason="A new client and his first deal")
    deal = agent.call("crm.deal.get", {"id": out["deal"]})
    in_sync = str(deal["CONTACT_ID"]) == str(out["contact"])
    if not in_sync:  # repair the link
        agent.call("crm.deal.update", {"id": out["deal"], "fields": {"CONTACT_ID": out["contact"]}},
                   reason="The deal lost its contact link")
    return {"contact_id": int(out["contact"]), "deal_id": int(out["deal"]), "linked": in_sync}


if __name__ == "__main__":
    main(run)
