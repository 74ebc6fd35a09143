"""20. Recover missed events: an agent that was down resumes from the feed cursor it saved, pages
through everything that arrived meanwhile (small pages, as after a long outage), folds several
changes of one object into one, and reconciles each object by reading its current state.

The portal side of recovery is the plane's: with offline events on, its worker drains the
portal's offline queue (`event.offline.get` with `clear=0`, then `event.offline.clear`) into the
same feed, which needs an administrator's OAuth app; an agent never consumes that queue itself
(it is destructive, and the plane's worker is its one consumer). What the agent must not miss is
its own cursor, and that is what this example shows."""

from examples._agent import Agent, main

TITLE = "Catch up on events missed while the agent was down"
PACKS = ["core"]


def run(agent: Agent, missed: int = 3) -> dict:
    saved_cursor = agent.feed_cursor()  # what the agent stored before it went down
    # meanwhile, on the portal: new leads (made here so the example is self-contained)
    created = agent.chain([{"name": f"lead_{n}", "method": "crm.lead.add", "params": {"fields": {
        "TITLE": f"Lead while offline {n}", "SOURCE_ID": "CALL"}}} for n in range(1, missed + 1)],
        reason="Example: leads that arrive while the agent is down")
    expected = {int(v) for v in created.values()}
    events, resume_at = agent.events_since(saved_cursor, event="ONCRMLEADADD", limit=2,
                                           until=lambda found: expected <= agent.object_ids(found))
    lead_ids = sorted(agent.object_ids(events))
    current = agent.chain([{"name": f"lead_{i}", "method": "crm.lead.get", "params": {"id": i}} for i in lead_ids],
                          reason="Reconcile the missed leads") if lead_ids else {}
    return {"created": sorted(expected), "recovered": lead_ids,
            "titles": [current[f"lead_{i}"]["TITLE"] for i in lead_ids], "resume_at": resume_at,
            "saved_cursor": saved_cursor}


if __name__ == "__main__":
    main(run)
