"""A minimal chat-bot surface, enough to deliver `ONIMBOTMESSAGEADD` as documented
(api-reference/chat-bots/outdated/...; samples/event_onimbotmessageadd_group.json):
`imbot.register` (app context), `im.chat.add`, `im.message.add`. A message in a group chat that
mentions a bot (`[USER=<bot id>]...[/USER]`), or a message to the bot's own dialog, is POSTed to
the bot's `EVENT_MESSAGE_ADD` handler after commit."""

import re

from . import clock, events
from .errors import SandboxError
from .methods import Ctx, Outcome, _param, _positive_int
from .models import SandboxOAuthClient
from .params import php_build_query
from .records import next_ids, record_create, record_get, record_query
from .tokens import application_token, endpoints, issue_token

BOT_USER_BASE = 500  # bot user IDs start above the sandbox's human users
_MENTION_RE = re.compile(r"\[USER=([0-9]{1,9})\]")


def _error(code: str, message: str) -> SandboxError:
    return SandboxError(code, message, status=400)


def imbot_register(ctx: Ctx, params: dict) -> Outcome:
    code = _param(params, "CODE")
    if not isinstance(code, str) or not code.strip():
        raise _error("CODE_ERROR", "Bot code isn't specified")
    handler = _param(params, "EVENT_MESSAGE_ADD") or _param(params, "EVENT_HANDLER")
    if not isinstance(handler, str) or not events.valid_handler_url(handler.strip()):
        raise _error("EVENT_MESSAGE_ADD_ERROR", "Handler for \"Message add\" event isn't specified")
    properties = _param(params, "PROPERTIES")
    name = properties.get("NAME") if isinstance(properties, dict) else None
    if not isinstance(name, str) or not name.strip():
        raise _error("NAME_ERROR", "Bot name isn't specified")
    bots, _ = record_query(portal=ctx.portal, entity="imbot", conditions=[], order=[], offset=0, limit=10**6,
                           count=False)
    if any(b["CODE"] == code.strip() and b["CLIENT_ID"] == ctx.client_id for b in bots):
        raise _error("BOT_ALREADY_REGISTERED", "Bot with this code is already registered")
    bot_id = BOT_USER_BASE + next_ids(portal=ctx.portal, entity="imbot_user", count=1)[0]

    def build(_: int) -> dict:
        return {"ID": str(bot_id), "CODE": code.strip(), "NAME": name.strip(), "CLIENT_ID": ctx.client_id,
                "HANDLER": handler.strip(), "TYPE": str(_param(params, "TYPE") or "B")}

    # the record ID is the sequence's; the bot is found by its user ID in the data
    record_create(portal=ctx.portal, entity="imbot", build=build)
    return Outcome(bot_id)


def im_chat_add(ctx: Ctx, params: dict) -> Outcome:
    users = _param(params, "USERS")
    users = list(users.values()) if isinstance(users, dict) else users
    members = sorted({ctx.user_id, *(u for u in (_positive_int(x) for x in users or []) if u)}) \
        if isinstance(users, list) else [ctx.user_id]
    title = _param(params, "TITLE")
    title = title if isinstance(title, str) and title.strip() else "Chat"

    def build(new_id: int) -> dict:
        return {"ID": str(new_id), "TITLE": title, "AUTHOR_ID": str(ctx.user_id), "USERS": members,
                "LAST_MESSAGE_ID": "0"}

    chat_id, _ = record_create(portal=ctx.portal, entity="im_chat", build=build)
    return Outcome(chat_id)


def _bot(ctx: Ctx, bot_id: int) -> dict | None:
    bots, _ = record_query(portal=ctx.portal, entity="imbot", conditions=[], order=[], offset=0, limit=10**6,
                           count=False)
    return next((b for b in bots if b["ID"] == str(bot_id)), None)


def im_message_add(ctx: Ctx, params: dict) -> Outcome:
    dialog = _param(params, "DIALOG_ID")
    message = _param(params, "MESSAGE")
    if not isinstance(message, str | int) or not str(message).strip():
        raise _error("MESSAGE_EMPTY", "Message can't be empty")
    message = str(message)
    dialog = str(dialog).strip() if isinstance(dialog, str | int) and not isinstance(dialog, bool) else ""
    chat = None
    if dialog.startswith("chat"):
        chat_id = _positive_int(dialog[len("chat"):])
        chat = record_get(portal=ctx.portal, entity="im_chat", record_id=chat_id) if chat_id else None
        if chat is None:
            raise _error("CHAT_ID_EMPTY", "Chat ID can't be empty")
        targets = [int(m) for m in _MENTION_RE.findall(message)]
    else:
        to_user = _positive_int(dialog)
        if to_user is None:
            raise _error("USER_ID_EMPTY", "User ID can't be empty")
        targets = [to_user]
    message_id = next_ids(portal=ctx.portal, entity="im_message", count=1)[0]
    for bot_id in dict.fromkeys(targets):
        bot = _bot(ctx, bot_id)
        if bot is not None:
            _deliver(ctx, bot, chat, dialog, message, message_id)
            _deliver_command(ctx, bot, chat, dialog, message, message_id)
    return Outcome(message_id)


# ---------------------------------------------------------------------------- bot commands
# imbot.command.register / answer (api-reference/chat-bots/outdated/commands/...): a message
# `/<command> <params>` to the bot (its dialog, or a chat that mentions it) is POSTed to the
# command's EVENT_COMMAND_ADD handler as ONIMCOMMANDADD, after commit.

_COMMAND_RE = re.compile(r"^/([A-Za-z0-9_-]{1,64})(?:\s+(.*))?$", re.S)


def imbot_command_register(ctx: Ctx, params: dict) -> Outcome:
    bot = _bot(ctx, _positive_int(_param(params, "BOT_ID")) or 0)
    if bot is None or bot["CLIENT_ID"] != ctx.client_id:
        raise _error("BOT_ID_ERROR", "Bot not found")
    command = _param(params, "COMMAND")
    command = command.strip().lstrip("/") if isinstance(command, str) else ""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", command):
        raise _error("COMMAND_ERROR", "Command isn't specified")
    handler = _param(params, "EVENT_COMMAND_ADD")
    if not isinstance(handler, str) or not events.valid_handler_url(handler.strip()):
        raise _error("EVENT_COMMAND_ADD_ERROR", "Handler for \"Command add\" event isn't specified")
    lang = _param(params, "LANG")
    lang = list(lang.values()) if isinstance(lang, dict) else lang
    if lang is not None and (not isinstance(lang, list) or not all(
            isinstance(item, dict) and isinstance(item.get("LANGUAGE_ID"), str) for item in lang)):
        raise _error("LANG_ERROR", "Incorrect LANG format")
    commands, _ = record_query(portal=ctx.portal, entity="imbot_command", conditions=[], order=[], offset=0,
                               limit=10**6, count=False)
    if any(c["BOT_ID"] == bot["ID"] and c["COMMAND"] == command.lower() for c in commands):
        raise _error("COMMAND_ERROR", "Command already registered")

    def build(new_id: int) -> dict:
        return {"ID": str(new_id), "BOT_ID": bot["ID"], "COMMAND": command.lower(), "CLIENT_ID": ctx.client_id,
                "COMMON": "Y" if str(_param(params, "COMMON")).upper() == "Y" else "N",
                "HIDDEN": "Y" if str(_param(params, "HIDDEN")).upper() == "Y" else "N",
                "HANDLER": handler.strip(), "LANG": lang or []}

    command_id, _ = record_create(portal=ctx.portal, entity="imbot_command", build=build)
    return Outcome(command_id)


def imbot_command_answer(ctx: Ctx, params: dict) -> Outcome:
    command_id = _positive_int(_param(params, "COMMAND_ID"))
    command = record_get(portal=ctx.portal, entity="imbot_command", record_id=command_id) if command_id else None
    if command is None or command["CLIENT_ID"] != ctx.client_id:
        raise _error("COMMAND_ID_ERROR", "Command not found")
    if _positive_int(_param(params, "MESSAGE_ID")) is None:
        raise _error("MESSAGE_ID_ERROR", "Message ID can't be empty")
    message = _param(params, "MESSAGE")
    if not isinstance(message, str | int) or isinstance(message, bool) or not str(message).strip():
        raise _error("MESSAGE_EMPTY", "Message can't be empty")
    return Outcome(next_ids(portal=ctx.portal, entity="im_message", count=1)[0])


def _deliver_command(ctx: Ctx, bot: dict, chat: dict | None, dialog: str, message: str, message_id: int) -> None:
    text = _MENTION_RE.sub("", message).replace("[/USER]", "").strip()
    match = _COMMAND_RE.match(text)
    if match is None:
        return
    commands, _ = record_query(portal=ctx.portal, entity="imbot_command", conditions=[], order=[], offset=0,
                               limit=10**6, count=False)
    command = next((c for c in commands if c["BOT_ID"] == bot["ID"] and c["COMMAND"] == match.group(1).lower()),
                   None)
    client = SandboxOAuthClient.objects.filter(client_id=bot["CLIENT_ID"]).first()
    if command is None or client is None:
        return
    bot_auth = _auth_block(ctx, client, int(bot["ID"]))
    group = chat is not None
    payload = {
        "event": "ONIMCOMMANDADD",
        "event_handler_id": command["ID"],
        "data": {
            "COMMAND": {command["ID"]: {
                "AUTH": {k: v for k, v in bot_auth.items() if k != "application_token"},
                "BOT_ID": bot["ID"], "BOT_CODE": bot["CODE"], "COMMAND": command["COMMAND"],
                "COMMAND_ID": command["ID"], "COMMAND_PARAMS": (match.group(2) or "").strip(),
                "COMMAND_CONTEXT": "TEXTAREA", "MESSAGE_ID": str(message_id)}},
            "PARAMS": {"DIALOG_ID": dialog, "CHAT_ID": chat["ID"] if group else "",
                       "MESSAGE_TYPE": "C" if group else "P", "MESSAGE_ID": str(message_id), "MESSAGE": text,
                       "FROM_USER_ID": str(ctx.user_id),
                       "TO_USER_ID": "" if group else bot["ID"], "TO_CHAT_ID": chat["ID"] if group else "",
                       "LANGUAGE": "en"},
            "USER": {"ID": str(ctx.user_id), "NAME": f"Sandbox User {ctx.user_id}", "FIRST_NAME": "Sandbox",
                     "LAST_NAME": f"User {ctx.user_id}", "WORK_POSITION": "", "GENDER": "M", "IS_BOT": "N",
                     "IS_CONNECTOR": "N", "IS_NETWORK": "N", "IS_EXTRANET": "N"},
        },
        "ts": str(int(clock.now())),
        "auth": _auth_block(ctx, client, ctx.user_id),
    }
    events.send_after_commit(command["HANDLER"], php_build_query(payload))


def _auth_block(ctx: Ctx, client: SandboxOAuthClient, user_id: int) -> dict:
    pair = issue_token(ctx.portal, client, user_id, ctx.portal.token_lifetime, events.base_url(), refreshed=True)
    urls = endpoints(portal=ctx.portal, base_url=events.base_url())
    return {"access_token": pair["access_token"], "expires": pair["expires"], "expires_in": pair["expires_in"],
            "scope": pair["scope"], "domain": urls["domain"], "server_endpoint": urls["server_endpoint"],
            "status": client.status, "client_endpoint": urls["client_endpoint"], "member_id": ctx.portal.member_id,
            "user_id": user_id, "refresh_token": pair["refresh_token"],
            "application_token": application_token(portal=ctx.portal, subject=client.client_id)}


def _deliver(ctx: Ctx, bot: dict, chat: dict | None, dialog: str, message: str, message_id: int) -> None:
    client = SandboxOAuthClient.objects.filter(client_id=bot["CLIENT_ID"]).first()
    if client is None:
        return
    bot_id = int(bot["ID"])
    bot_auth = _auth_block(ctx, client, bot_id)
    bot_block = {k: v for k, v in bot_auth.items() if k != "application_token"}
    bot_block.update(client_id=client.client_id, application_token=bot_auth["application_token"])
    group = chat is not None
    params = {
        "MESSAGE": _MENTION_RE.sub("", message).replace("[/USER]", "").strip() if group else message,
        "TEMPLATE_ID": f"sandbox-{message_id}", "MESSAGE_TYPE": "C" if group else "P",
        "FROM_USER_ID": str(ctx.user_id), "DIALOG_ID": dialog,
        "TO_CHAT_ID": chat["ID"] if group else "", "AUTHOR_ID": str(ctx.user_id), "SYSTEM": "N",
    }
    if group:
        params.update({
            "CHAT_ID": chat["ID"], "CHAT_TITLE": chat["TITLE"], "CHAT_AUTHOR_ID": chat["AUTHOR_ID"],
            "CHAT_TYPE": "C", "CHAT_AVATAR": "0", "CHAT_COLOR": "BROWN", "CHAT_ENTITY_TYPE": "",
            "CHAT_ENTITY_ID": "", "CHAT_ENTITY_DATA_1": "", "CHAT_ENTITY_DATA_2": "", "CHAT_ENTITY_DATA_3": "",
            "CHAT_EXTRANET": "N", "CHAT_PREV_MESSAGE_ID": chat.get("LAST_MESSAGE_ID", "0"), "CHAT_CAN_POST": "MEMBER",
        })
    params.update({
        "RID": str(ctx.user_id), "IS_MANAGER": "N", "PUSH": "Y", "PUSH_IMPORTANT": "N", "RECENT_SKIP_AUTHOR": "N",
        "CONVERT": "N", "SKIP_COMMAND": "N", "SKIP_COUNTER_INCREMENTS": "N", "SILENT_CONNECTOR": "N",
        "SKIP_CONNECTOR": "N", "IMPORTANT_CONNECTOR": "N", "NO_SESSION_OL": "N", "FAKE_RELATION": "0",
        "SKIP_URL_INDEX": "N", "COMMAND_CONTEXT": "TEXTAREA",
    })
    if group:
        params.update({"CHAT_USER_COUNT": str(len(chat.get("USERS") or [])),
                       "MENTIONED_LIST": {str(bot_id): str(bot_id)}})
    params.update({"PLATFORM_CONTEXT": "web", "MESSAGE_ORIGINAL": message, "TO_USER_ID": str(bot_id),
                   "MESSAGE_ID": str(message_id), "LANGUAGE": "en"})
    payload = {
        "event": "ONIMBOTMESSAGEADD",
        "event_handler_id": bot["ID"],
        "data": {
            "BOT": {str(bot_id): {**bot_block, "AUTH": dict(bot_block), "BOT_ID": str(bot_id),
                                  "BOT_CODE": bot["CODE"]}},
            "PARAMS": params,
            "USER": {"ID": str(ctx.user_id), "NAME": f"Sandbox User {ctx.user_id}", "FIRST_NAME": "Sandbox",
                     "LAST_NAME": f"User {ctx.user_id}", "WORK_POSITION": "", "GENDER": "M", "IS_BOT": "N",
                     "IS_CONNECTOR": "N", "IS_NETWORK": "N", "IS_EXTRANET": "N"},
        },
        "ts": str(int(clock.now())),
        "auth": _auth_block(ctx, client, ctx.user_id),
    }
    events.send_after_commit(bot["HANDLER"], php_build_query(payload))

