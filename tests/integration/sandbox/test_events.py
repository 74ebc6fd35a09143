"""event.bind/unbind/get/events and the documented errors; online delivery when leads, deals,
contacts and tasks change; the offline queue (FACTS §9, §11)."""

from urllib.parse import parse_qsl

import pytest

from apps.sandbox import events
from apps.sandbox.services import sandbox_application_token, sandbox_outgoing_webhook_create

pytestmark = pytest.mark.django_db

HANDLER = "https://app.example.test/handler/"


@pytest.fixture
def posted(monkeypatch):
    sent: list[tuple[str, dict]] = []
    monkeypatch.setattr(events, "post_form", lambda url, body: sent.append((url, dict(parse_qsl(body)))))
    monkeypatch.setattr(events.threading, "Thread", _InlineThread)
    return sent


class _InlineThread:
    def __init__(self, target, **kwargs):
        self.target = target

    def start(self):
        self.target()


def test_bind_get_unbind(make_app):
    app = make_app()
    assert app.call("event.bind", {"event": "onCrmLeadAdd", "handler": HANDLER}).json()["result"] is True
    assert app.call("event.bind", {"event": "ONCRMLEADADD", "handler": HANDLER, "auth_type": 15}).status_code == 200
    got = app.call("event.get").json()["result"]
    assert got == [{"event": "ONCRMLEADADD", "handler": HANDLER, "auth_type": "0", "offline": 0},
                   {"event": "ONCRMLEADADD", "handler": HANDLER, "auth_type": "15", "offline": 0}]
    again = app.call("event.bind", {"event": "ONCRMLEADADD", "handler": HANDLER})
    assert again.status_code == 400 and again.json()["error"] == "ERROR_HANDLER_ALREADY_EXIST"
    assert app.call("event.unbind", {"event": "ONCRMLEADADD", "handler": HANDLER, "auth_type": 0}).json()[
        "result"] == {"count": 1}
    assert app.call("event.unbind", {"event": "ONCRMLEADADD", "handler": HANDLER}).json()["result"] == {"count": 1}
    assert app.call("event.get").json()["result"] == []


def test_bind_errors(make_app):
    app = make_app()
    unknown = app.call("event.bind", {"event": "ONNOSUCHTHING", "handler": HANDLER})
    assert unknown.status_code == 400
    assert unknown.json() == {"error": "ERROR_EVENT_NOT_FOUND", "error_description": "Event not found"}
    user = make_app(user_id=7, client_id=app.client_id)  # not an administrator
    offline = user.call("event.bind", {"event": "ONCRMLEADADD", "event_type": "offline"})
    assert offline.status_code == 403 and offline.json()["error"] == "ACCESS_DENIED"
    other = user.call("event.bind", {"event": "ONCRMLEADADD", "handler": HANDLER, "auth_type": 1})
    assert other.status_code == 403 and "AUTH_TYPE" in other.json()["error_description"]
    unbind = user.call("event.unbind", {"event": "ONCRMLEADADD", "event_type": "offline"})
    assert unbind.status_code == 403
    assert unbind.json()["error_description"] == \
        "Access denied! Offline events unbinding requires administrator access rights"
    assert app.call("event.bind", {"event": "ONCRMLEADADD"}).status_code == 400  # online needs a handler


@pytest.mark.parametrize("method", ["event.bind", "event.unbind", "event.get"])
def test_webhooks_get_wrong_auth_type(rest, method):
    answer = rest.call(method, {"event": "ONCRMLEADADD", "handler": HANDLER})
    assert answer.status_code == 403
    assert answer.json() == {"error": "WRONG_AUTH_TYPE", "error_description": "Application context required"}


def test_events_lists_codes(rest):
    every = rest.call("events").json()["result"]
    assert "ONCRMLEADADD" in every and "ONAPPINSTALL" in every and "ONTASKADD" in every
    crm = rest.call("events", {"SCOPE": "crm"}).json()["result"]
    assert "ONCRMDEALUPDATE" in crm and "ONAPPINSTALL" not in crm


@pytest.mark.parametrize("entity,event", [("lead", "ONCRMLEAD"), ("deal", "ONCRMDEAL"), ("contact", "ONCRMCONTACT")])
def test_crm_changes_are_posted(make_app, rest, posted, entity, event, django_capture_on_commit_callbacks):
    app = make_app()
    for verb in ("ADD", "UPDATE", "DELETE"):
        app.call("event.bind", {"event": event + verb, "handler": HANDLER})
    with django_capture_on_commit_callbacks(execute=True):
        new_id = rest.call(f"crm.{entity}.add", {"fields": {"TITLE": "x"}}).json()["result"]
        rest.call(f"crm.{entity}.update", {"id": new_id, "fields": {"TITLE": "y"}})
        rest.call(f"crm.{entity}.delete", {"id": new_id})
    assert [(url, body["event"], body["data[FIELDS][ID]"]) for url, body in posted] == [
        (HANDLER, event + verb, str(new_id)) for verb in ("ADD", "UPDATE", "DELETE")]
    body = posted[0][1]
    assert body["auth[application_token]"] == sandbox_application_token(portal=rest.portal, client_id=app.client_id)
    assert body["auth[member_id]"] == rest.portal.member_id and body["auth[access_token]"]
    # the token in the event works for calls
    token_call = rest.client.get(f"/sandbox/acme/rest/server.time?auth={body['auth[access_token]']}")
    assert token_call.status_code == 200


def test_task_changes_are_posted(make_app, rest, posted, django_capture_on_commit_callbacks):
    app = make_app()
    app.call("event.bind", {"event": "ONTASKADD", "handler": HANDLER})
    with django_capture_on_commit_callbacks(execute=True):
        task = rest.call("tasks.task.add", {"fields": {"TITLE": "t", "RESPONSIBLE_ID": 1}}).json()["result"]["task"]
    assert posted[0][1]["event"] == "ONTASKADD" and posted[0][1]["data[FIELDS_AFTER][ID]"] == str(task["id"])
    assert posted[0][1]["data[FIELDS_BEFORE]"] == "undefined"


def test_outgoing_webhook_auth_has_no_tokens(rest, posted, django_capture_on_commit_callbacks):
    hook_id, token = sandbox_outgoing_webhook_create(portal=rest.portal, event="ONCRMDEALADD", handler=HANDLER)
    with django_capture_on_commit_callbacks(execute=True):
        rest.call("crm.deal.add", {"fields": {"TITLE": "d"}})
    body = posted[0][1]
    assert {k for k in body if k.startswith("auth[")} == {
        "auth[domain]", "auth[client_endpoint]", "auth[server_endpoint]", "auth[member_id]",
        "auth[application_token]"}
    assert body["auth[application_token]"] == token and body["event_handler_id"] == str(hook_id)


def test_nothing_posted_without_commit_or_binding(make_app, rest, posted, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        rest.call("crm.lead.add", {"fields": {"TITLE": "nobody listens"}})
    assert posted == []


# ---------------------------------------------------------------------------- offline queue


@pytest.fixture
def offline_app(make_app):
    app = make_app()
    assert app.call("event.bind", {"event": "ONCRMLEADADD", "event_type": "offline"}).status_code == 200
    assert app.call("event.bind", {"event": "ONCRMLEADUPDATE", "event_type": "offline"}).status_code == 200
    return app


def _leads(rest, n: int) -> list[int]:
    return [rest.call("crm.lead.add", {"fields": {"TITLE": f"L{i}"}}).json()["result"] for i in range(n)]


def test_offline_get_reserves_clears_and_errors(offline_app, rest):
    app = offline_app
    ids = _leads(rest, 3)
    got = app.call("event.offline.get", {"clear": 0, "limit": 2}).json()["result"]
    assert got["process_id"] and len(got["events"]) == 2
    assert set(got["events"][0]) == {"ID", "TIMESTAMP_X", "EVENT_NAME", "EVENT_DATA", "EVENT_ADDITIONAL",
                                     "MESSAGE_ID"}
    assert [e["EVENT_DATA"]["FIELDS"]["ID"] for e in got["events"]] == [str(i) for i in ids[:2]]
    # reserved records are hidden from other readers; the rest is theirs
    other = app.call("event.offline.get", {"clear": 0}).json()["result"]
    assert [e["EVENT_DATA"]["FIELDS"]["ID"] for e in other["events"]] == [str(ids[2])]
    # a worker that lost its answer re-fetches the reserved batch by process_id
    again = app.call("event.offline.get", {"clear": 0, "process_id": got["process_id"]}).json()["result"]
    assert again == got
    first, second = got["events"]
    assert app.call("event.offline.error", {"process_id": got["process_id"],
                                            "message_id": [second["MESSAGE_ID"]]}).json()["result"] is True
    assert app.call("event.offline.clear", {"process_id": got["process_id"],
                                            "message_id": [first["MESSAGE_ID"]]}).json()["result"] is True
    listed = app.call("event.offline.list").json()
    assert listed["total"] == 2
    assert {(r["EVENT_DATA"]["FIELDS"]["ID"], r["ERROR"], r["PROCESS_ID"]) for r in listed["result"]} == {
        (str(ids[1]), "1", ""), (str(ids[2]), "0", other["process_id"])}
    errors = app.call("event.offline.get", {"error": 1}).json()["result"]
    assert [e["MESSAGE_ID"] for e in errors["events"]] == [second["MESSAGE_ID"]] and errors["process_id"] is None
    assert app.call("event.offline.clear", {"process_id": other["process_id"]}).json()["result"] is True
    assert app.call("event.offline.list").json()["total"] == 0


def test_offline_clear_by_id_and_default_clear(offline_app, rest):
    app = offline_app
    _leads(rest, 2)
    got = app.call("event.offline.get", {"clear": 0}).json()["result"]
    app.call("event.offline.clear", {"process_id": got["process_id"], "id": [got["events"][0]["ID"]],
                                     "message_id": ["ignored-when-id-is-given"]})
    assert app.call("event.offline.list").json()["total"] == 1
    app.call("event.offline.clear", {"process_id": got["process_id"]})
    _leads(rest, 1)
    taken = app.call("event.offline.get").json()["result"]  # clear=1 by default: gone at once
    assert taken["process_id"] is None and len(taken["events"]) == 1
    assert app.call("event.offline.list").json()["total"] == 0


def test_one_record_per_object_last_change_wins(offline_app, rest):
    lead_id = _leads(rest, 1)[0]
    rest.call("crm.lead.update", {"id": lead_id, "fields": {"TITLE": "changed"}})
    rows = offline_app.call("event.offline.list").json()["result"]
    assert [r["EVENT_NAME"] for r in rows] == ["ONCRMLEADUPDATE"]


def test_own_writes_with_auth_connector_are_not_queued(make_app, rest):
    app = make_app()
    app.call("event.bind", {"event": "ONCRMLEADADD", "event_type": "offline", "auth_connector": "ours"})
    rest.call("crm.lead.add", {"fields": {"TITLE": "mine"}, "auth_connector": "ours"})
    rest.call("crm.lead.add", {"fields": {"TITLE": "theirs"}})
    assert app.call("event.offline.list").json()["total"] == 0  # without the connector: source-less only
    rows = app.call("event.offline.list", {"auth_connector": "ours"}).json()["result"]
    assert len(rows) == 1


@pytest.mark.parametrize("method", ["event.offline.get", "event.offline.list", "event.offline.clear",
                                    "event.offline.error"])
def test_offline_methods_need_app_and_admin(rest, make_app, method):
    by_hook = rest.call(method, {"process_id": "x"})
    assert by_hook.status_code == 403 and by_hook.json() == {"error": "ACCESS_DENIED",
                                                              "error_description": "Access denied!"}
    by_user = make_app(user_id=7).call(method, {"process_id": "x"})
    assert by_user.status_code == 403 and by_user.json()["error"] == "ACCESS_DENIED"


def test_onofflineevent_notifies(offline_app, rest, posted, django_capture_on_commit_callbacks):
    offline_app.call("event.bind", {"event": "ONOFFLINEEVENT", "handler": HANDLER, "options": {"minTimeout": 0}})
    with django_capture_on_commit_callbacks(execute=True):
        _leads(rest, 2)
    assert [b["event"] for _, b in posted] == ["ONOFFLINEEVENT", "ONOFFLINEEVENT"]
    assert "auth[refresh_token]" in posted[0][1] and not any(k.startswith("data") for k in posted[0][1])


def test_reserved_batches_are_dropped_after_30_days(offline_app, make_app, rest, sb_clock):
    _leads(rest, 2)
    got = offline_app.call("event.offline.get", {"clear": 0, "limit": 1}).json()["result"]
    sb_clock.advance(29 * 86400)
    app = make_app(client_id=offline_app.client_id)  # a fresh token: access tokens live an hour
    assert app.call("event.offline.get", {"clear": 0, "process_id": got["process_id"]}).json()[
        "result"]["events"] == got["events"]
    sb_clock.advance(2 * 86400)
    app = make_app(client_id=offline_app.client_id)
    app.call("event.offline.get", {"clear": 0, "filter": {"=EVENT_NAME": "NONE"}})  # any reader drops them
    rows = app.call("event.offline.list").json()["result"]
    assert [r["PROCESS_ID"] for r in rows] == [""]  # the unreserved record stays
