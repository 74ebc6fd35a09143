"""13. A News Feed post for a release, to everyone, marked important."""

from examples._agent import Agent, main

TITLE = "Announce a release in the News Feed"
PACKS = ["collab"]


def run(agent: Agent, version: str = "2.4") -> dict:
    post_id = int(agent.call("log.blogpost.add", {
        "POST_TITLE": f"Release {version}", "DEST": ["UA"], "IMPORTANT": "Y",
        "POST_MESSAGE": f"Version {version} is live: faster exports, scrum boards and SLA alerts."},
        reason=f"Release {version} announcement"))
    posts = agent.call("log.blogpost.get", {"POST_ID": post_id})
    return {"post_id": post_id, "title": posts[0]["TITLE"] if posts else None}


if __name__ == "__main__":
    main(run)
