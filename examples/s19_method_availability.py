"""19. Check method availability, risk and policy before a rollout (diagnostics)."""

from clients.b24cp import ApiError
from examples._agent import Agent, main

TITLE = "Check method availability and policy before a rollout"
PACKS = ["core", "diagnostics (optional: the portal's scopes)"]
ROLLOUT = ["crm.lead.add", "crm.deal.update", "tasks.task.add", "im.message.add", "crm.lead.delete", "vendor.thing.do"]


def run(agent: Agent, methods: list[str] = ROLLOUT) -> dict:
    report = {}
    for name in methods:
        described = agent.client.describe(name, portal=agent.portal)
        report[name] = {"known": described["known"], "risk": described["risk"], "granted": described["granted"],
                        "policy": described["policy"], "packs": described["packs"]}
    try:
        scopes = agent.call("scope")
    except ApiError as exc:  # without the diagnostics pack the plane says which pack would grant it
        scopes = {"refused": exc.code, "pack": exc.pack}
    blocked = sorted(name for name, row in report.items() if not row["granted"] or row["policy"] == "deny")
    return {"methods": report, "blocked": blocked, "portal_scopes": scopes}


if __name__ == "__main__":
    main(run)
