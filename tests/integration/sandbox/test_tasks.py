"""tasks.task.* on v2 (/rest/) and REST 3.0 (/rest/api/): envelopes and errors."""

import pytest

from .conftest import sample

pytestmark = pytest.mark.django_db

V3 = "BITRIX_REST_V3_EXCEPTION_"


def add_v3(rest, title="Prepare report", **extra):
    return rest.v3("tasks.task.add", {"fields": {"title": title, "creatorId": 1, "responsibleId": 1, **extra}})


def test_v2_task_lifecycle(rest):
    added = rest.call("tasks.task.add", {"fields": {"TITLE": "Call back", "RESPONSIBLE_ID": 5}})
    assert added.status_code == 200
    task = added.json()["result"]["task"]
    assert task["id"] == "1" and task["title"] == "Call back" and task["responsibleId"] == "5"
    assert task["status"] == "2"
    got = rest.call("tasks.task.get", {"taskId": 1, "select": ["ID", "TITLE"]}).json()["result"]
    assert got == {"task": {"id": "1", "title": "Call back"}}
    updated = rest.call("tasks.task.update", {"taskId": 1, "fields": {"STATUS": 5}}).json()["result"]["task"]
    assert updated["status"] == "5" and updated["closedDate"] is not None
    listed = rest.call("tasks.task.list", {"filter": {"RESPONSIBLE_ID": 5}}).json()
    assert [t["id"] for t in listed["result"]["tasks"]] == ["1"] and listed["total"] == 1


def test_v2_task_errors(rest):
    assert rest.call("tasks.task.get", {"taskId": 42}).json()["result"] == []  # documented: empty array
    missing = rest.call("tasks.task.get", {})
    assert missing.status_code == 400 and missing.json()["error"] == "100"
    wrong = rest.call("tasks.task.get", {"taskId": "abc"})
    assert wrong.status_code == 400 and wrong.json() == {"error": "0", "error_description": "wrong task id"}
    no_title = rest.call("tasks.task.add", {"fields": {"RESPONSIBLE_ID": 1}})
    assert no_title.status_code == 400 and no_title.json()["error"] == "ERROR_CORE"
    bad_status = rest.call("tasks.task.add", {"fields": {"TITLE": "x", "STATUS": 99}})
    assert bad_status.status_code == 400
    not_there = rest.call("tasks.task.update", {"taskId": 9, "fields": {"TITLE": "y"}})
    assert not_there.status_code == 400


def test_v3_add_get_update_list_envelopes(rest):
    added = add_v3(rest, deadline="2026-12-31T23:59:59+02:00", crmItemIds=["L_1"])
    assert added.status_code == 200, added.content
    body = added.json()
    reference = sample("response_rest3_item")["body"]
    assert set(body) == set(reference) and set(body["time"]) == set(reference["time"])
    item = body["result"]["item"]
    assert item["id"] == 1 and item["title"] == "Prepare report" and item["status"] == "pending"
    assert item["priority"] == "average" and item["crmItemIds"] == ["L_1"]

    got = rest.v3("tasks.task.get", {"id": 1, "select": ["id", "title", "unknownField"]}).json()
    assert got["result"] == {"item": {"id": 1, "title": "Prepare report"}}  # unknown select field dropped

    updated = rest.v3("tasks.task.update", {"id": 1, "fields": {"title": "Renamed", "status": "completed"}})
    assert updated.json()["result"] == {"result": True}

    for i in range(4):
        add_v3(rest, title=f"T{i}")
    listed = rest.v3("tasks.task.list", {"select": ["id", "title", "status"], "filter": [["id", ">", 1]],
                                         "order": {"id": "DESC"}, "pagination": {"page": 1, "limit": 2}}).json()
    assert listed["result"]["items"] == [{"id": 5, "title": "T3", "status": "pending"},
                                         {"id": 4, "title": "T2", "status": "pending"}]
    assert "total" not in listed and "next" not in listed
    page2 = rest.v3("tasks.task.list", {"pagination": {"page": 2, "limit": 2}}).json()
    assert page2["result"]["items"] == [{"id": 3}, {"id": 4}]  # without select: only id
    ins = rest.v3("tasks.task.list", {"filter": [["id", "in", [1, 3]]]}).json()
    assert ins["result"]["items"] == [{"id": 1}, {"id": 3}]
    short = rest.v3("tasks.task.list", {"filter": [["id", 2]]}).json()
    assert short["result"]["items"] == [{"id": 2}]
    rest.v3("tasks.task.delete", {"id": 2})
    assert rest.v3("tasks.task.get", {"id": 2}).status_code == 400


def test_v3_and_v2_share_the_same_tasks(rest):
    add_v3(rest, title="shared")
    assert rest.call("tasks.task.get", {"taskId": 1}).json()["result"]["task"]["title"] == "shared"


@pytest.mark.parametrize("method,body,status,code", [
    ("tasks.task.add", {"fields": {"title": "x", "creatorId": 1}}, 400, "VALIDATION_REQUESTVALIDATIONEXCEPTION"),
    ("tasks.task.add", {}, 400, "VALIDATION_REQUESTVALIDATIONEXCEPTION"),
    ("tasks.task.add", {"fields": {"title": "x", "creatorId": "1", "responsibleId": 1}}, 400,
     "VALIDATION_REQUESTVALIDATIONEXCEPTION"),
    ("tasks.task.add", {"fields": {"title": "x", "creatorId": 1, "responsibleId": 1, "stageId": 1}}, 400,
     "UNKNOWNDTOPROPERTYEXCEPTION"),
    ("tasks.task.get", {"id": 77}, 400, "ENTITYNOTFOUNDEXCEPTION"),
    ("tasks.task.get", {}, 400, "VALIDATION_REQUESTVALIDATIONEXCEPTION"),
    ("tasks.task.get", {"id": "abc"}, 400, "VALIDATION_REQUESTVALIDATIONEXCEPTION"),
    ("tasks.task.list", {"filter": [["title", "=", "x"]]}, 400, "VALIDATION_REQUESTVALIDATIONEXCEPTION"),
    ("tasks.task.list", {"filter": [["id", "like", 1]]}, 400, "UNKNOWNFILTEROPERATOREXCEPTION"),
    ("tasks.task.list", {"pagination": {"limit": "abc"}}, 400, "INVALIDPAGINATIONEXCEPTION"),
    ("tasks.task.list", {"pagination": {"limit": 0}}, 400, "INVALIDPAGINATIONEXCEPTION"),
    ("tasks.task.list", {"order": {"id": "SIDEWAYS"}}, 400, "INVALIDORDEREXCEPTION"),
    ("tasks.task.update", {"id": 5, "fields": {"title": "x"}}, 400, "ENTITYNOTFOUNDEXCEPTION"),
    ("tasks.task.get", [1, 2], 400, "VALIDATION_REQUESTVALIDATIONEXCEPTION"),
])
def test_v3_errors(rest, method, body, status, code):
    answer = rest.v3(method, body)
    assert answer.status_code == status
    error = answer.json()["error"]
    assert error["code"] == V3 + code
    assert isinstance(error["message"], str)
    if code.startswith("VALIDATION"):
        assert error["validation"][0]["field"]


def test_v3_invalid_json(rest):
    answer = rest.v3("tasks.task.get", raw="{id: 1")
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == sample("error_rest3_invalid_json")["body"]["error"]["code"]
    form = rest.client.post(rest.url("tasks.task.get", api=True), {"id": 1})  # multipart: not JSON
    assert form.status_code == 400
    assert form.json()["error"]["code"] == V3 + "INVALIDJSONEXCEPTION"


def test_v3_ignores_query_string(rest):
    add_v3(rest)
    answer = rest.client.get(rest.url("tasks.task.get", api=True) + "?id=1")
    assert answer.status_code == 400
    assert answer.json()["error"]["validation"][0]["field"] == "id"


def test_v3_unknown_method_and_v2_only_method(rest):
    assert rest.v3("crm.lead.list").status_code == 404
    assert rest.v3("crm.lead.list").json()["error"]["code"] == "ERROR_METHOD_NOT_FOUND"
    assert rest.call("rest.scope.list").status_code == 404  # 3.0-only without /api/
    assert rest.v3("rest.scope.list").status_code == 200


def test_v3_scope_is_tasks(rest):
    from apps.sandbox.services import sandbox_webhook_create

    _, code = sandbox_webhook_create(portal=rest.portal, scopes=["crm"])
    answer = rest.client.post(f"/sandbox/acme/rest/api/1/{code}/tasks.task.list", data="{}",
                              content_type="application/json")
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == V3 + "INSUFFICIENTSCOPEEXCEPTION"
    _, tasks_code = sandbox_webhook_create(portal=rest.portal, scopes=["tasks"])
    ok = rest.client.post(f"/sandbox/acme/rest/api/1/{tasks_code}/tasks.task.list", data="{}",
                          content_type="application/json")
    assert ok.status_code == 200
    # v2 tasks.task.* needs scope `task`, which this webhook lacks
    assert rest.client.get(f"/sandbox/acme/rest/1/{tasks_code}/tasks.task.list").status_code == 403
    # and the v2 scope `task` does not open the REST 3.0 methods
    _, task_code = sandbox_webhook_create(portal=rest.portal, scopes=["task"])
    v2_only = rest.client.post(f"/sandbox/acme/rest/api/1/{task_code}/tasks.task.list", data="{}",
                               content_type="application/json")
    assert v2_only.status_code == 403
    assert rest.client.get(f"/sandbox/acme/rest/1/{task_code}/tasks.task.list").status_code == 200
