"""The collaboration methods the user scenarios use (apps/sandbox/workspace.py): each family's
answer shape, one documented error per family (HTTP 400, the portal's code), the scopes they need,
and bad input answered like a portal, never a 500."""

import pytest

from apps.sandbox.services import sandbox_webhook_create

pytestmark = pytest.mark.django_db


def ok(answer):
    assert answer.status_code == 200, answer.content
    return answer.json()["result"]


def err(answer, code: str, status: int = 400) -> str:
    assert answer.status_code == status, answer.content
    body = answer.json()
    assert body["error"] == code, body
    return body["error_description"]


def _task(rest) -> int:
    return int(ok(rest.call("tasks.task.add", {"fields": {"TITLE": "t", "RESPONSIBLE_ID": 1}}))["task"]["id"])


@pytest.mark.parametrize("method", ["im.notify.personal.add", "im.notify.system.add"])
def test_notifications(rest, method):
    first = ok(rest.call(method, {"USER_ID": 2, "MESSAGE": "Deal #1 moved", "TAG": "deal-1"}))
    second = ok(rest.call(method, {"USER_ID": 2, "MESSAGE": "again"}))
    assert isinstance(first, int) and second == first + 1
    assert err(rest.call(method, {"MESSAGE": "x"}), "USER_ID_EMPTY") == "Recipient ID not specified"
    assert err(rest.call(method, {"USER_ID": 2, "MESSAGE": " "}), "MESSAGE_EMPTY")
    err(rest.call(method, {"USER_ID": 2, "MESSAGE": "x", "ATTACH": "text"}), "ATTACH_ERROR")
    err(rest.call(method, {"USER_ID": {"a": 1}, "MESSAGE": "x"}), "USER_ID_EMPTY")


def test_checklist_items_positional_and_named(rest):
    task_id = _task(rest)
    first = ok(rest.client.get(rest.url("task.checklistitem.add") + f"?0={task_id}&1[TITLE]=Draft"
                               "&1[MEMBERS][2][TYPE]=A"))
    second = ok(rest.call("task.checklistitem.add", {"TASKID": task_id, "FIELDS": {"TITLE": "Review",
                                                                                    "IS_IMPORTANT": "Y"}}))
    assert isinstance(first, int) and second > first
    assert ok(rest.call("task.checklistitem.complete", {"0": task_id, "1": first})) is True
    items = ok(rest.call("task.checklistitem.getlist", {"0": task_id}))
    assert [i["TITLE"] for i in items] == ["Draft", "Review"]
    assert set(items[0]) == {"ID", "TASK_ID", "PARENT_ID", "CREATED_BY", "TITLE", "SORT_INDEX", "IS_COMPLETE",
                             "IS_IMPORTANT", "TOGGLED_BY", "TOGGLED_DATE", "MEMBERS", "ATTACHMENTS"}
    assert items[0]["IS_COMPLETE"] == "Y" and items[0]["TOGGLED_BY"] == "1"
    assert items[0]["MEMBERS"] == {"2": {"USER_ID": "2", "TYPE": "A"}} and items[1]["IS_IMPORTANT"] == "Y"
    assert ok(rest.call("task.checklistitem.get", {"0": task_id, "1": second}))["TITLE"] == "Review"


def test_checklist_errors_are_error_core(rest):
    task_id = _task(rest)
    assert "taskId" in err(rest.call("task.checklistitem.add", {"0": "abc", "1": {"TITLE": "x"}}), "ERROR_CORE")
    assert "ACTION_FAILED" in err(rest.call("task.checklistitem.add", {"0": 99999, "1": {"TITLE": "x"}}),
                                  "ERROR_CORE")
    err(rest.call("task.checklistitem.add", {"0": task_id, "1": {"TITLE": ""}}), "ERROR_CORE")
    err(rest.call("task.checklistitem.add", {"0": task_id, "1": "text"}), "ERROR_CORE")
    err(rest.call("task.checklistitem.add", {"0": task_id, "1": {"TITLE": "x", "MEMBERS": {"2": {"TYPE": "Z"}}}}),
        "ERROR_CORE")
    err(rest.call("task.checklistitem.get", {"0": task_id, "1": 424242}), "ERROR_CORE")


def test_calendar_event(rest):
    event_id = ok(rest.call("calendar.event.add", {
        "type": "user", "ownerId": 1, "section": 3, "name": "Review", "from": "2026-12-01 10:00:00",
        "to": "2026-12-01 11:00:00", "is_meeting": "Y", "attendees": [2, 3],
        "remind": [{"type": "min", "count": 15}]}))
    assert isinstance(event_id, int)
    event = ok(rest.call("calendar.event.getbyid", {"id": event_id}))
    assert event["ATTENDEES_CODES"] == ["U1", "U2", "U3"] and event["REMIND"] == [{"type": "min", "count": 15}]
    assert event["NAME"] == "Review" and event["IS_MEETING"] is True and event["MEETING_HOST"] == "1"


def test_calendar_errors(rest):
    base = {"type": "user", "ownerId": 1, "section": 3, "name": "x", "from": "2026-12-01 10:00:00",
            "to": "2026-12-01 11:00:00"}
    missing = {k: v for k, v in base.items() if k != "name"}
    assert err(rest.call("calendar.event.add", missing), "") == \
        'The required parameter "name" for the method "calendar.event.add" is not set'
    err(rest.call("calendar.event.add", {**base, "type": "planet"}), "")
    err(rest.call("calendar.event.add", {**base, "attendees": ["x"]}), "")
    err(rest.call("calendar.event.add", {**base, "remind": [{"type": "week", "count": 1}]}), "")
    err(rest.call("calendar.event.getbyid", {"id": 987654}), "")


def test_blogpost(rest):
    post_id = ok(rest.call("log.blogpost.add", {"POST_TITLE": "Release 2.4", "POST_MESSAGE": "Live now",
                                                "DEST": ["UA", "U2"]}))
    posts = ok(rest.call("log.blogpost.get", {"POST_ID": post_id}))
    assert len(posts) == 1 and posts[0]["ID"] == post_id and posts[0]["DETAIL_TEXT"] == "Live now"
    assert posts[0]["TITLE"] == "Release 2.4" and posts[0]["MICRO"] == "N" and posts[0]["HAS_SOCNET_ALL"] == "Y"
    err(rest.call("log.blogpost.add", {"POST_MESSAGE": ""}), "ERROR_CORE")
    err(rest.call("log.blogpost.add", {"POST_MESSAGE": "x", "DEST": ["nobody"]}), "ERROR_CORE")
    err(rest.call("log.blogpost.add", {"POST_MESSAGE": "x", "DEST": ["SG777"]}), "ERROR_CORE")


def test_workgroups(rest):
    group_id = ok(rest.call("sonet_group.create", {"NAME": "Relaunch", "VISIBLE": "Y", "OPENED": "N",
                                                   "INITIATE_PERMS": "E", "PROJECT": "Y"}))
    assert isinstance(group_id, int)
    assert ok(rest.call("sonet_group.user.add", {"GROUP_ID": group_id, "USER_ID": [2, 3]})) == [2, 3]
    assert ok(rest.call("sonet_group.user.add", {"GROUP_ID": group_id, "USER_ID": 2})) == []
    members = ok(rest.call("sonet_group.user.get", {"ID": group_id}))
    assert members == [{"USER_ID": "1", "ROLE": "A"}, {"USER_ID": "2", "ROLE": "K"}, {"USER_ID": "3", "ROLE": "K"}]
    assert ok(rest.call("sonet_group.update", {"GROUP_ID": group_id, "DESCRIPTION": "New"})) == group_id
    (group,) = ok(rest.call("sonet_group.get", {"FILTER": {"ID": group_id}}))
    assert group["NAME"] == "Relaunch" and group["DESCRIPTION"] == "New" and group["NUMBER_OF_MEMBERS"] == "3"
    assert group["PROJECT"] == "Y" and group["OWNER_ID"] == "1" and "MEMBERS" not in group
    assert ok(rest.call("sonet_group.create", {"arFields": {"NAME": "Other"}})) == group_id + 1


def test_workgroup_errors(rest):
    group_id = ok(rest.call("sonet_group.create", {"NAME": "Relaunch"}))
    err(rest.call("sonet_group.create", {"NAME": ""}), "ERROR_CORE")
    err(rest.call("sonet_group.create", {"NAME": "relaunch"}), "ERROR_CORE")
    err(rest.call("sonet_group.create", {"NAME": "x", "INITIATE_PERMS": "Q"}), "ERROR_CORE")
    assert err(rest.call("sonet_group.user.add", {"GROUP_ID": 999, "USER_ID": [2]}), "ERROR_CORE") == \
        "Socialnetwork group not found"
    err(rest.call("sonet_group.user.add", {"GROUP_ID": group_id, "USER_ID": ["x"]}), "ERROR_CORE")
    err(rest.call("sonet_group.update", {"GROUP_ID": group_id, "NAME": ""}), "ERROR_CORE")
    err(rest.call("sonet_group.user.get", {"ID": "abc"}), "ERROR_CORE")


def test_business_process(rest):
    deal_id = ok(rest.call("crm.deal.add", {"fields": {"TITLE": "Contract"}}))
    templates = ok(rest.call("bizproc.workflow.template.list", {"select": ["ID", "NAME"],
                                                                "filter": {"ENTITY": "CCrmDocumentDeal"}}))
    assert templates == [{"ID": 1, "NAME": "Document approval"}]
    workflow_id = ok(rest.call("bizproc.workflow.start", {
        "TEMPLATE_ID": 1, "DOCUMENT_ID": ["crm", "CCrmDocumentDeal", f"DEAL_{deal_id}"]}))
    assert isinstance(workflow_id, str) and len(workflow_id) > 10
    running = ok(rest.call("bizproc.workflow.instances", {"filter": {"DOCUMENT_ID": f"DEAL_{deal_id}"}}))
    assert [w["ID"] for w in running] == [workflow_id]
    assert running[0]["TEMPLATE_ID"] == "1" and running[0]["ENTITY"] == "CCrmDocumentDeal"


def test_business_process_errors(rest):
    deal_id = ok(rest.call("crm.deal.add", {"fields": {"TITLE": "Contract"}}))
    doc = ["crm", "CCrmDocumentDeal", f"DEAL_{deal_id}"]
    err(rest.call("bizproc.workflow.start", {"DOCUMENT_ID": doc}), "ERROR_WRONG_WORKFLOW_ID")
    err(rest.call("bizproc.workflow.start", {"TEMPLATE_ID": 77, "DOCUMENT_ID": doc}), "ERROR_TEMPLATE_NOT_FOUND")
    err(rest.call("bizproc.workflow.start", {"TEMPLATE_ID": 1, "DOCUMENT_ID": "DEAL_1"}), "ERROR_WRONG_DOCUMENT_ID")
    err(rest.call("bizproc.workflow.start", {"TEMPLATE_ID": 2, "DOCUMENT_ID": doc}), "ERROR_WRONG_DOCUMENT_ID")
    err(rest.call("bizproc.workflow.start", {"TEMPLATE_ID": 1,
                                             "DOCUMENT_ID": ["crm", "CCrmDocumentDeal", "DEAL_99999"]}),
        "ERROR_DOCUMENT_NOT_FOUND")


@pytest.mark.parametrize(("method", "scope"), [
    ("im.notify.personal.add", "im"), ("calendar.event.add", "calendar"), ("log.blogpost.add", "log"),
    ("sonet_group.create", "sonet_group"), ("bizproc.workflow.start", "bizproc"),
    ("task.checklistitem.add", "task"),
])
def test_each_family_needs_its_scope(client, sb_portal, method, scope):
    from tests.integration.sandbox.conftest import Rest

    user_id, code = sandbox_webhook_create(portal=sb_portal, scopes=["crm"], code="crmonly")
    limited = Rest(client, sb_portal, user_id, code)
    err(limited.call(method, {}), "insufficient_scope", 403)
    user_id, code = sandbox_webhook_create(portal=sb_portal, scopes=[scope], code="withscope")
    answer = Rest(client, sb_portal, user_id, code).call(method, {})
    assert answer.status_code == 400 and answer.json()["error"] != "insufficient_scope"
