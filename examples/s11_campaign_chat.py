"""11. A campaign team chat with a kickoff message."""

from examples._agent import Agent, main

TITLE = "Open a campaign team chat and post the kickoff"
PACKS = ["comms"]


def run(agent: Agent, team: tuple[int, ...] = (1, 2, 3), campaign: str = "Spring launch") -> dict:
    chat_id = int(agent.call("im.chat.add", {
        "TYPE": "CHAT", "TITLE": f"Campaign: {campaign}", "USERS": list(team),
        "DESCRIPTION": f"Working chat of the {campaign} campaign"}, reason=f"Team chat for {campaign}"))
    message_id = int(agent.call("im.message.add", {
        "DIALOG_ID": f"chat{chat_id}",
        "MESSAGE": f"Kickoff: {campaign} starts Monday. Owners, please post your plans here by Friday."},
        reason="Kickoff message"))
    return {"chat_id": chat_id, "message_id": message_id}


if __name__ == "__main__":
    main(run)
