"""REST 3.0 filter groups (`logic: or`) and field rules, rest.documentation.openapi, `.xml`."""

import xml.etree.ElementTree as ET

import pytest

pytestmark = pytest.mark.django_db
PREFIX = "BITRIX_REST_V3_EXCEPTION_"


@pytest.fixture
def tasks(rest):
    ids = []
    for i in range(6):
        answer = rest.v3("tasks.task.add", {"fields": {"title": f"t{i}", "creatorId": 1, "responsibleId": 1}})
        ids.append(answer.json()["result"]["item"]["id"])
    return ids


def _ids(rest, flt) -> list[int]:
    answer = rest.v3("tasks.task.list", {"filter": flt})
    assert answer.status_code == 200, answer.content
    return [item["id"] for item in answer.json()["result"]["items"]]


def test_logic_or_groups(rest, tasks):
    a, b, c, d, e, f = tasks
    # the docs' example shape: AND of a condition and an OR group (with the [field, [values]] shorthand)
    assert _ids(rest, [["id", ">", a], {"logic": "or", "conditions": [["id", [a, b]], ["id", "in", [d, e]]]}]) == \
        [b, d, e]
    assert _ids(rest, [{"logic": "or", "conditions": [["id", "=", a], {"logic": "and", "conditions": [
        ["id", ">", d], ["id", "<", f]]}]}]) == [a, e]
    assert _ids(rest, [["id", "between", [b, d]]]) == [b, c, d]
    assert _ids(rest, [{"logic": "or", "conditions": [["id", "=", a]]}, {"logic": "or", "conditions": [
        ["id", "=", b]]}]) == []


@pytest.mark.parametrize("flt,code", [
    ([["stageId", "=", 1]], "UNKNOWNDTOPROPERTYEXCEPTION"),
    ([{"logic": "or", "conditions": [["nosuch", 1]]}], "UNKNOWNDTOPROPERTYEXCEPTION"),
    ([["title", "=", "t1"]], "VALIDATION_REQUESTVALIDATIONEXCEPTION"),  # not filterable for tasks
    ([["id", "like", 1]], "UNKNOWNFILTEROPERATOREXCEPTION"),
    ([["id", "=", "abc"]], "VALIDATION_REQUESTVALIDATIONEXCEPTION"),
    ([{"logic": "xor", "conditions": [["id", 1]]}], "VALIDATION_REQUESTVALIDATIONEXCEPTION"),
    ([{"logic": "or", "conditions": []}], "VALIDATION_REQUESTVALIDATIONEXCEPTION"),
])
def test_filter_errors(rest, flt, code):
    answer = rest.v3("tasks.task.list", {"filter": flt})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == PREFIX + code


def test_field_list_says_what_filters(rest):
    items = rest.v3("tasks.task.field.list", {"select": ["name", "filterable"]}).json()["result"]["items"]
    assert {"name": "id", "filterable": True} in items and {"name": "title", "filterable": False} in items


@pytest.mark.parametrize("name", ["rest.documentation.openapi", "documentation"])
def test_openapi(rest, name):
    posted = rest.v3(name, {})
    got = rest.client.get(rest.url(name, api=True))
    assert posted.status_code == got.status_code == 200
    doc = got.json()
    assert doc == posted.json()
    assert doc["openapi"] == "3.0.0" and "/tasks.task.get" in doc["paths"] and "TaskDto" in doc["components"][
        "schemas"]
    assert {"name": "tasks", "description": "tasks module methods"} in doc["tags"]
    assert rest.get(name).status_code == 404  # REST 3.0 only: v2 has no such method


def test_xml_answers(rest, make_leads):
    make_leads(2)
    answer = rest.client.get(rest.url("crm.lead.list.xml") + "?select[]=ID&select[]=TITLE")
    assert answer.status_code == 200 and answer["Content-Type"].startswith("text/xml")
    root = ET.fromstring(answer.content)
    assert root.tag == "response" and root.findtext("total") == "2"
    assert [i.findtext("TITLE") for i in root.find("result")] == ["Lead 1", "Lead 2"]
    assert root.find("time/start") is not None
    missing = rest.client.get(rest.url("crm.lead.get.xml") + "?id=99")
    assert missing.status_code == 400
    assert ET.fromstring(missing.content).findtext("error_description") == "Not found"
    assert rest.client.get(rest.url("server.time.json")).json()["result"]
    assert rest.client.post(rest.url("tasks.task.list.xml", api=True), data="{}",
                            content_type="application/json").status_code == 404
