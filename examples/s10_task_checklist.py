"""10. Checklist items on a task, each with its owner (one chain), then one ticked off."""

from examples._agent import Agent, main

TITLE = "Add checklist items with owners to a task"
PACKS = ["core"]
ITEMS = (("Draft the contract", 1), ("Legal review", 2), ("Send for signature", 1))


def run(agent: Agent, task_id: int | None = None, items: tuple[tuple[str, int], ...] = ITEMS) -> dict:
    if task_id is None:
        task_id = int(agent.call("tasks.task.add", {"fields": {"TITLE": "Close the ACME contract",
                                                               "RESPONSIBLE_ID": 1}},
                                 reason="Example: a task that needs a checklist")["task"]["id"])
    # task.checklistitem.* take their parameters by position: 0 = task ID, 1 = fields (FACTS §1)
    steps = [{"name": f"item_{n}", "method": "task.checklistitem.add", "params": {
        "0": task_id, "1": {"TITLE": title, "SORT_INDEX": n * 10, "MEMBERS": {str(owner): {"TYPE": "A"}}}}}
        for n, (title, owner) in enumerate(items, start=1)]
    created = agent.chain(steps, reason=f"Checklist for task #{task_id}")
    first = int(created["item_1"])
    agent.call("task.checklistitem.complete", {"0": task_id, "1": first}, reason="The draft is done")
    listed = agent.call("task.checklistitem.getlist", {"0": task_id})
    return {"task_id": task_id, "items": [{"title": i["TITLE"], "owners": sorted(i["MEMBERS"]),
                                           "done": i["IS_COMPLETE"] == "Y"} for i in listed]}


if __name__ == "__main__":
    main(run)
