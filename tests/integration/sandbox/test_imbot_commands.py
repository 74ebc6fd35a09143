"""Bot commands: imbot.command.register / imbot.command.answer (application context), and a
`/command params` message to the bot POSTed to the command's handler as ONIMCOMMANDADD."""

import pytest

from tests.integration.sandbox.test_imbot import HANDLER, _register, posted  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db
COMMAND_HANDLER = "https://bot.example.test/command/"


def _command(app, bot_id, command="status"):
    return app.call("imbot.command.register", {
        "BOT_ID": bot_id, "COMMAND": command, "COMMON": "N", "HIDDEN": "N", "EVENT_COMMAND_ADD": COMMAND_HANDLER,
        "LANG": [{"LANGUAGE_ID": "en", "TITLE": "Deal status", "PARAMS": "deal id"}]})


def test_command_is_delivered_and_answered(make_app, rest, posted, django_capture_on_commit_callbacks):  # noqa: F811
    app = make_app()
    bot_id = _register(app).json()["result"]
    command_id = _command(app, bot_id).json()["result"]
    assert isinstance(command_id, int)
    with django_capture_on_commit_callbacks(execute=True):
        rest.call("im.message.add", {"DIALOG_ID": str(bot_id), "MESSAGE": "/status 42"})
    by_url = {url: body for url, body in posted}
    assert set(by_url) == {HANDLER, COMMAND_HANDLER} and by_url[COMMAND_HANDLER]["event"] == "ONIMCOMMANDADD"
    body = by_url[COMMAND_HANDLER]
    prefix = f"data[COMMAND][{command_id}]"
    assert body[f"{prefix}[COMMAND]"] == "status" and body[f"{prefix}[COMMAND_PARAMS]"] == "42"
    assert body[f"{prefix}[BOT_ID]"] == str(bot_id) and body["data[PARAMS][MESSAGE_TYPE]"] == "P"
    assert body["auth[application_token]"]
    answer = app.call("imbot.command.answer", {"COMMAND_ID": command_id, "MESSAGE_ID": body[f"{prefix}[MESSAGE_ID]"],
                                               "MESSAGE": "Deal 42: negotiation"})
    assert answer.status_code == 200 and isinstance(answer.json()["result"], int)


def test_command_errors(make_app, rest):
    app = make_app()
    bot_id = _register(app).json()["result"]
    assert _command(app, 999).json()["error"] == "BOT_ID_ERROR"
    assert _command(app, bot_id, command="").json()["error"] == "COMMAND_ERROR"
    no_handler = app.call("imbot.command.register", {"BOT_ID": bot_id, "COMMAND": "x"})
    assert no_handler.status_code == 400 and no_handler.json()["error"] == "EVENT_COMMAND_ADD_ERROR"
    assert app.call("imbot.command.register", {"BOT_ID": bot_id, "COMMAND": "x", "EVENT_COMMAND_ADD": COMMAND_HANDLER,
                                               "LANG": "en"}).json()["error"] == "LANG_ERROR"
    command_id = _command(app, bot_id).json()["result"]
    assert _command(app, bot_id).json()["error"] == "COMMAND_ERROR"  # registered already
    assert app.call("imbot.command.answer", {"COMMAND_ID": 9999, "MESSAGE_ID": 1, "MESSAGE": "x"}).json()["error"] \
        == "COMMAND_ID_ERROR"
    assert app.call("imbot.command.answer", {"COMMAND_ID": command_id, "MESSAGE_ID": 1, "MESSAGE": ""}).json()[
        "error"] == "MESSAGE_EMPTY"
    hook = rest.call("imbot.command.register", {"BOT_ID": bot_id, "COMMAND": "y"})
    assert hook.status_code == 403 and hook.json()["error"] == "WRONG_AUTH_TYPE"
