"""23. Register a bot command and answer it.

Bots need an application context (Bitrix24 refuses `imbot.*` through an incoming webhook with
WRONG_AUTH_TYPE), so the bot lives on the portal as the plane's OAuth app sees it
(B24CP_APP_PORTAL, default `demo-app`). The bot's and the command's handler is the plane's event
endpoint; the plane verifies the portal's `application_token` and puts ONIMCOMMANDADD into the
agent's feed, and the agent answers with `imbot.command.answer`. The user who types the command is
played through the agent's usual portal."""

import os
import secrets

from examples._agent import Agent, main

TITLE = "Register a bot command and answer it"
PACKS = ["comms"]


def run(agent: Agent, app_portal: str | None = None, deal_id: int = 42) -> dict:
    app = agent.on(app_portal or os.environ.get("B24CP_APP_PORTAL", "demo-app"))
    handler = f"{agent.client.base_url}/hooks/bitrix24/events"
    bot_id = int(app.call("imbot.register", {
        "CODE": f"deal_status_{secrets.token_hex(3)}", "TYPE": "B", "EVENT_MESSAGE_ADD": handler,
        "EVENT_WELCOME_MESSAGE": handler, "EVENT_BOT_DELETE": handler,
        "PROPERTIES": {"NAME": "Deal status bot", "WORK_POSITION": "Answers /status <deal id>"}},
        reason="A bot that answers deal status questions"))
    command_id = int(app.call("imbot.command.register", {
        "BOT_ID": bot_id, "COMMAND": "status", "COMMON": "N", "HIDDEN": "N", "EXTRANET_SUPPORT": "N",
        "LANG": [{"LANGUAGE_ID": "en", "TITLE": "Deal status", "PARAMS": "deal id"}],
        "EVENT_COMMAND_ADD": handler}, reason="Its /status command"))
    cursor = app.feed_cursor()
    # a user writes to the bot
    agent.call("im.message.add", {"DIALOG_ID": str(bot_id), "MESSAGE": f"/status {deal_id}"},
               reason="Example: a user asks the bot")
    events, _ = app.events_since(cursor, event="ONIMCOMMANDADD", until=lambda found: any(
        str(command_id) in (e["data"].get("COMMAND") or {}) for e in found))
    asked = next(e["data"]["COMMAND"][str(command_id)] for e in events
                 if str(command_id) in (e["data"].get("COMMAND") or {}))
    answer = f"Deal {asked['COMMAND_PARAMS']}: I will look it up and post the stage here."
    message_id = int(app.call("imbot.command.answer", {
        "COMMAND_ID": command_id, "MESSAGE_ID": int(asked["MESSAGE_ID"]), "MESSAGE": answer},
        reason="Answer the /status command"))
    return {"bot_id": bot_id, "command_id": command_id, "params": asked["COMMAND_PARAMS"], "answer_id": message_id}


if __name__ == "__main__":
    main(run)
