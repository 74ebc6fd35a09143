"""24. Workgroup metadata and members: read the group, add members, update its description."""

import secrets

from examples._agent import Agent, main

TITLE = "Keep a workgroup's metadata and members up to date"
PACKS = ["collab"]


def run(agent: Agent, group_id: int | None = None, members: tuple[int, ...] = (2, 3)) -> dict:
    if group_id is None:
        group_id = int(agent.call("sonet_group.create", {"NAME": f"Support rota {secrets.token_hex(2)}",
                                                         "VISIBLE": "Y", "OPENED": "N"},
                                  reason="Example: a workgroup to maintain"))
    group = agent.call("sonet_group.get", {"FILTER": {"ID": group_id}})[0]
    before = {int(m["USER_ID"]) for m in agent.call("sonet_group.user.get", {"ID": group_id})}
    missing = [u for u in members if u not in before]
    out = agent.chain([
        {"name": "members", "method": "sonet_group.user.add", "params": {"GROUP_ID": group_id, "USER_ID": missing}},
        {"name": "meta", "method": "sonet_group.update", "params": {
            "GROUP_ID": group_id, "DESCRIPTION": f"{group['NAME']}: {len(before) + len(missing)} members"}},
    ], reason=f"Add {len(missing)} members to the group and refresh its description")
    after = agent.call("sonet_group.user.get", {"ID": group_id})
    group = agent.call("sonet_group.get", {"FILTER": {"ID": group_id}})[0]
    return {"group_id": group_id, "added": out["members"], "members": sorted(int(m["USER_ID"]) for m in after),
            "description": group["DESCRIPTION"], "number_of_members": int(group["NUMBER_OF_MEMBERS"])}


if __name__ == "__main__":
    main(run)
