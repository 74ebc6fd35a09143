"""2. Enrich a lead with a normalised phone and email."""

import re

from examples._agent import Agent, main

TITLE = "Enrich a lead with a normalised phone and e-mail"
PACKS = ["core"]


def normalise_phone(raw: str) -> str:
    digits = re.sub(r"\D", "", raw)
    return "+" + digits if digits else ""


def run(agent: Agent, lead_id: int | None = None) -> dict:
    if lead_id is None:
        lead_id = int(agent.call("crm.lead.add", {"fields": {"TITLE": "Lead to enrich", "NAME": "Ana"}},
                                 reason="Example: a lead to enrich"))
    phone, email = normalise_phone("(600) 111-333 ext"), " Ana.Ruiz@Example.COM ".strip().lower()
    agent.call("crm.lead.update", {"id": lead_id, "fields": {
        "PHONE": [{"VALUE": phone, "VALUE_TYPE": "MOBILE"}], "EMAIL": [{"VALUE": email, "VALUE_TYPE": "WORK"}],
    }}, reason="Add the normalised phone and e-mail found for this lead")
    lead = agent.call("crm.lead.get", {"id": lead_id})
    return {"lead_id": lead_id, "phone": lead["PHONE"][0]["VALUE"], "email": lead["EMAIL"][0]["VALUE"]}


if __name__ == "__main__":
    main(run)
