"""Positional parameters (FACTS §1: `0=123&1[POST_MESSAGE]=...`) answer like a portal, never 500."""

import json

import pytest

pytestmark = pytest.mark.django_db


def _task(rest) -> int:
    answer = rest.call("tasks.task.add", {"fields": {"TITLE": "commented", "RESPONSIBLE_ID": 1}})
    return int(answer.json()["result"]["task"]["id"])


def test_named_method_with_positional_query_is_a_portal_error(rest):
    answer = rest.client.get(rest.url("crm.lead.get") + "?0=1")
    assert answer.status_code == 400
    assert answer.json() == {"error": "", "error_description": "ID is not defined or invalid."}


@pytest.mark.parametrize("how", ["get", "form", "json-array", "named"])
def test_commentitem_add_takes_positional_parameters(rest, how):
    task_id = _task(rest)
    if how == "get":
        answer = rest.client.get(rest.url("task.commentitem.add") + f"?0={task_id}&1[POST_MESSAGE]=hi")
    elif how == "form":
        answer = rest.client.post(rest.url("task.commentitem.add"), data=f"0={task_id}&1%5BPOST_MESSAGE%5D=hi",
                                  content_type="application/x-www-form-urlencoded")
    elif how == "json-array":
        answer = rest.client.post(rest.url("task.commentitem.add"), content_type="application/json",
                                  data=json.dumps([task_id, {"POST_MESSAGE": "hi"}]))
    else:
        answer = rest.call("task.commentitem.add", {"TASKID": task_id, "FIELDS": {"POST_MESSAGE": "hi"}})
    assert answer.status_code == 200, answer.content
    comment_id = answer.json()["result"]
    assert isinstance(comment_id, int)
    got = rest.client.get(rest.url("task.commentitem.get") + f"?0={task_id}&1={comment_id}").json()["result"]
    assert got["ID"] == str(comment_id) and got["POST_MESSAGE"] == "hi" and got["AUTHOR_ID"] == "1"
    listed = rest.client.get(rest.url("task.commentitem.getlist") + f"?0={task_id}").json()["result"]
    assert [c["ID"] for c in listed] == [str(comment_id)]


def test_commentitem_errors_are_error_core(rest):
    task_id = _task(rest)
    empty = rest.client.get(rest.url("task.commentitem.add") + f"?0={task_id}&1[POST_MESSAGE]=")
    assert empty.status_code == 400 and empty.json()["error"] == "ERROR_CORE"
    bad_id = rest.client.get(rest.url("task.commentitem.add") + "?0=abc&1[POST_MESSAGE]=x")
    assert bad_id.status_code == 400 and "taskId" in bad_id.json()["error_description"]
    wrong_key = rest.client.get(rest.url("task.commentitem.add") + f"?0={task_id}&1[TITLE]=x")
    assert wrong_key.status_code == 400 and "must not contain key" in wrong_key.json()["error_description"]
    no_task = rest.client.get(rest.url("task.commentitem.add") + "?0=999&1[POST_MESSAGE]=x")
    assert no_task.status_code == 400 and no_task.json()["error"] == "ERROR_CORE"


@pytest.mark.parametrize("query", ["0=1", "0=1&1=2&2[x]=3", "0[0][0]=1", "1=a", "0="])
def test_positional_keys_never_crash(rest, query):
    for method in ("crm.lead.get", "crm.lead.list", "tasks.task.get", "batch", "task.commentitem.getlist",
                   "user.current", "scope"):
        answer = rest.client.get(rest.url(method) + f"?{query}")
        assert answer.status_code < 500, (method, answer.content)
        assert answer["Content-Type"].startswith("application/json")
