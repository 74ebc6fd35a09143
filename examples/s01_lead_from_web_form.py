"""1. Create a lead from a website form payload and attach source metadata."""

from examples._agent import Agent, main

TITLE = "Create a lead from a web form with its source metadata"
PACKS = ["core"]

FORM = {"name": "Maria", "last_name": "Lopez", "phone": "+34 600 111 222", "email": "maria@example.com",
        "message": "Please call me about the annual plan", "page": "https://example.com/pricing",
        "utm_source": "newsletter", "form_id": "pricing-callback"}


def run(agent: Agent, form: dict = FORM) -> dict:
    fields = {
        "TITLE": f"Web form: {form['name']} {form['last_name']}",
        "NAME": form["name"], "LAST_NAME": form["last_name"],
        "PHONE": [{"VALUE": form["phone"], "VALUE_TYPE": "WORK"}],
        "EMAIL": [{"VALUE": form["email"], "VALUE_TYPE": "WORK"}],
        "COMMENTS": form["message"],
        "SOURCE_ID": "WEB",
        "SOURCE_DESCRIPTION": f"{form['page']} (utm_source={form['utm_source']})",
        "ORIGINATOR_ID": "website", "ORIGIN_ID": form["form_id"],
    }
    lead_id = agent.call("crm.lead.add", {"fields": fields}, reason=f"Web form {form['form_id']} was submitted",
                         key=f"webform-{form['form_id']}-{form['email']}")
    lead = agent.call("crm.lead.get", {"id": lead_id})
    return {"lead_id": int(lead_id), "source": lead["SOURCE_ID"], "has_phone": lead["HAS_PHONE"]}


if __name__ == "__main__":
    main(run)
