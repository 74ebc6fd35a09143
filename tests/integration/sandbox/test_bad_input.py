"""Bad input never gives a 500 or an HTML page: always the Bitrix24 error envelope."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.django_db

HUGE = "9" * 40


@pytest.mark.parametrize("method,params", [
    ("crm.lead.get", {"id": HUGE}),
    ("crm.lead.get", {"id": 2**70}),
    ("crm.lead.update", {"id": 1, "fields": {"OPPORTUNITY": "1e400"}}),
    ("crm.lead.add", {"fields": {"OPPORTUNITY": "NaN"}}),
    ("crm.lead.add", {"fields": {"ASSIGNED_BY_ID": HUGE}}),
    ("crm.lead.list", {"filter": {">ID": "1e400"}}),
    ("crm.lead.list", {"filter": {">ID": HUGE}}),
    ("crm.lead.list", {"filter": {"@ID": [HUGE, "x", None]}}),
    ("crm.lead.list", {"start": HUGE}),
    ("crm.lead.list", {"start": "1e9999"}),
    ("crm.lead.list", {"order": ["ID"]}),
    ("crm.lead.list", {"select": [1, 2]}),
    ("crm.lead.list", {"filter": {"": 1, ">": 2}}),
    ("tasks.task.get", {"taskId": HUGE}),
    ("tasks.task.add", {"fields": {"TITLE": "x", "RESPONSIBLE_ID": HUGE}}),
    ("tasks.task.list", {"filter": {"<ID": HUGE}}),
    ("batch", {"cmd": {"a": "crm.lead.get?id=" + HUGE}}),
    ("batch", {"cmd": {"a": "crm.lead.get?" + "x[" * 40 + "=1"}}),
    ("batch", {"cmd": {"a": "?"}}),
    ("batch", {"cmd": {"a": ""}}),
    ("batch", {"halt": {"x": 1}, "cmd": [None]}),
])
def test_odd_v2_params(rest, method, params):
    answer = rest.call(method, params)
    assert answer.status_code < 500, answer.content
    assert answer["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("method,body", [
    ("tasks.task.get", {"id": 2**70}),
    ("tasks.task.list", {"filter": [["id", ">", 2**70]]}),
    ("tasks.task.list", {"filter": [["id", "between", [1]]]}),
    ("tasks.task.list", {"filter": [{"logic": "or", "conditions": []}]}),
    ("tasks.task.list", {"filter": "id>1"}),
    ("tasks.task.list", {"pagination": {"offset": 2**70}}),
    ("tasks.task.list", {"pagination": {"page": 2**62, "limit": 1000}}),
    ("tasks.task.list", {"pagination": [1]}),
    ("tasks.task.list", {"select": "id"}),
    ("tasks.task.add", {"fields": {"title": "x", "creatorId": 2**70, "responsibleId": 1}}),
    ("tasks.task.update", {"id": 1, "fields": []}),
    ("batch", [1, 2]),
    ("batch", [{"method": "tasks.task.get", "query": []}]),
])
def test_odd_v3_bodies(rest, method, body):
    answer = rest.v3(method, body)
    assert answer.status_code < 500, answer.content
    assert "error" in answer.json()


def test_deeply_nested_json(rest):
    deep = "[" * 100_000 + "]" * 100_000
    answer = rest.client.post(rest.url("crm.lead.list"), data=deep, content_type="application/json")
    assert answer.status_code == 400
    answer = rest.v3("tasks.task.list", raw=deep)
    assert answer.status_code == 400


def test_deeply_nested_query(rest):
    answer = rest.client.get(rest.url("crm.lead.list") + "?filter" + "[a]" * 50 + "=1")
    assert answer.status_code == 400 and answer.json()["error"] == "INVALID_REQUEST"


def test_too_many_fields_in_form(rest):
    body = "&".join(f"k{i}=1" for i in range(6000))
    answer = rest.client.post(rest.url("crm.lead.list"), data=body, content_type="application/x-www-form-urlencoded")
    assert answer.status_code == 400


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["crm.lead.add", "crm.lead.list", "crm.deal.update", "tasks.task.add",
                               "tasks.task.list", "batch"]),
       params=st.dictionaries(st.sampled_from(["id", "fields", "filter", "order", "select", "start", "cmd",
                                               "halt", "taskId"]), json_values, max_size=4))
def test_random_v2_params_never_500(rest, method, params):
    answer = rest.client.post(rest.url(method), data=json.dumps(params), content_type="application/json")
    assert answer.status_code < 500, answer.content


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["tasks.task.add", "tasks.task.get", "tasks.task.list", "tasks.task.update",
                               "batch"]),
       body=json_values)
def test_random_v3_bodies_never_500(rest, method, body):
    answer = rest.v3(method, body)
    assert answer.status_code < 500, answer.content


NEW_METHODS = ["event.bind", "event.unbind", "event.get", "events", "event.offline.get", "event.offline.clear",
               "event.offline.error", "event.offline.list", "feature.get", "method.get", "methods", "scope",
               "app.info", "profile", "crm.item.add", "crm.item.get", "crm.item.list", "crm.item.update",
               "crm.item.delete", "crm.item.fields", "task.commentitem.add", "task.commentitem.get",
               "task.commentitem.getlist", "task.commentitem.delete", "biconnector.connector.get", "imbot.register",
               "im.chat.add", "im.message.add"]
ODD_VALUES = [HUGE, 2**70, -1, "abc", "", None, True, [1, "x"], {"a": {"b": [1]}}, "1e400", "NaN"]
ODD_KEYS = ["event", "handler", "auth_type", "event_type", "auth_connector", "options", "filter", "order", "limit",
            "clear", "process_id", "error", "id", "message_id", "start", "CODE", "name", "scope", "full",
            "entityTypeId", "fields", "select", "TASKID", "ITEMID", "FIELDS", "ORDER", "FILTER", "0", "1", "CODE",
            "EVENT_MESSAGE_ADD", "PROPERTIES", "DIALOG_ID", "MESSAGE", "USERS", "TITLE"]
FILTER_FIELDS = ["ID", ">TIMESTAMP_X", "=EVENT_NAME", "ERROR", "PROCESS_ID", "@MESSAGE_ID", "!ID", "title",
                 ">=id", "STAGE_ID"]


@pytest.mark.parametrize("method", NEW_METHODS)
def test_new_methods_with_odd_params(rest, make_app, method):
    """Every parameter alone with a few odd values, all at once with each, and odd filters."""
    app = make_app()
    calls = [{key: value for key in ODD_KEYS} for value in ODD_VALUES]
    calls += [{key: {"a": {"b": [1, "x"]}}, "entityTypeId": 1036, "process_id": "p"} for key in ODD_KEYS]
    calls += [{"filter": odd, "FILTER": odd, "entityTypeId": 1036, "TASKID": 1}
              for odd in ({field: value for field in FILTER_FIELDS} for value in ODD_VALUES)]
    for params in calls:
        answer = app.call(method, params)
        assert answer.status_code < 500, (method, params, answer.content)
        assert answer["Content-Type"].startswith("application/json")
