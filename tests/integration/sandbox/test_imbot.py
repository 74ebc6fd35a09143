"""The minimal chat-bot surface: imbot.register, im.chat.add, im.message.add -> ONIMBOTMESSAGEADD."""

from urllib.parse import parse_qsl

import pytest

from apps.sandbox import events

pytestmark = pytest.mark.django_db
HANDLER = "https://bot.example.test/hook/"


@pytest.fixture
def posted(monkeypatch):
    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr(events, "post_form", lambda url, body: sent.append((url, dict(parse_qsl(body)))))

    class Inline:
        def __init__(self, target, **kwargs):
            self.target = target

        def start(self):
            self.target()

    monkeypatch.setattr(events.threading, "Thread", Inline)
    return sent


def _register(app, code="BOT1"):
    return app.call("imbot.register", {"CODE": code, "EVENT_MESSAGE_ADD": HANDLER, "PROPERTIES": {"NAME": "Bot"}})


def test_mention_in_a_group_chat_and_a_private_message(make_app, rest, posted, django_capture_on_commit_callbacks):
    app = make_app()
    bot_id = _register(app).json()["result"]
    assert isinstance(bot_id, int)
    chat_id = rest.call("im.chat.add", {"TITLE": "Team", "USERS": [2, 3]}).json()["result"]
    with django_capture_on_commit_callbacks(execute=True):
        rest.call("im.message.add", {"DIALOG_ID": f"chat{chat_id}", "MESSAGE": "no mention here"})
        rest.call("im.message.add", {"DIALOG_ID": f"chat{chat_id}", "MESSAGE": f"[USER={bot_id}]Bot[/USER] hi"})
        rest.call("im.message.add", {"DIALOG_ID": str(bot_id), "MESSAGE": "private"})
    assert [(url, body["event"], body["data[PARAMS][MESSAGE_TYPE]"]) for url, body in posted] == [
        (HANDLER, "ONIMBOTMESSAGEADD", "C"), (HANDLER, "ONIMBOTMESSAGEADD", "P")]
    group = posted[0][1]
    assert group["data[PARAMS][MESSAGE]"] == "Bot hi" and group[f"data[BOT][{bot_id}][BOT_CODE]"] == "BOT1"
    assert group[f"data[PARAMS][MENTIONED_LIST][{bot_id}]"] == str(bot_id)
    token = group[f"data[BOT][{bot_id}][access_token]"]
    assert rest.client.get(f"/sandbox/acme/rest/server.time?auth={token}").status_code == 200


def test_register_errors(make_app, rest):
    app = make_app()
    assert app.call("imbot.register", {"EVENT_MESSAGE_ADD": HANDLER}).json()["error"] == "CODE_ERROR"
    assert app.call("imbot.register", {"CODE": "X", "PROPERTIES": {"NAME": "n"}}).json()["error"] == \
        "EVENT_MESSAGE_ADD_ERROR"
    assert app.call("imbot.register", {"CODE": "X", "EVENT_MESSAGE_ADD": HANDLER}).json()["error"] == "NAME_ERROR"
    assert _register(app).status_code == 200
    assert _register(app).json()["error"] == "BOT_ALREADY_REGISTERED"
    hook = rest.call("imbot.register", {"CODE": "Y", "EVENT_MESSAGE_ADD": HANDLER, "PROPERTIES": {"NAME": "n"}})
    assert hook.status_code == 403 and hook.json()["error"] == "WRONG_AUTH_TYPE"


def test_message_errors(rest):
    assert rest.call("im.message.add", {"DIALOG_ID": "chat999", "MESSAGE": "x"}).json()["error"] == "CHAT_ID_EMPTY"
    assert rest.call("im.message.add", {"DIALOG_ID": "1", "MESSAGE": ""}).json()["error"] == "MESSAGE_EMPTY"
    assert rest.call("im.message.add", {"DIALOG_ID": "abc", "MESSAGE": "x"}).json()["error"] == "USER_ID_EMPTY"
