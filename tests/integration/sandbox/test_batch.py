"""v2 batch: cmd map/array, $result references, result_error, halt, limits, nesting; REST 3.0 batch."""

import json
from urllib.parse import quote

import pytest

from apps.sandbox.params import php_build_query
from apps.sandbox.selectors import sandbox_counters, sandbox_records
from apps.sandbox.services import sandbox_webhook_create

from .conftest import sample

pytestmark = pytest.mark.django_db

SECTIONS = {"result", "result_error", "result_total", "result_next", "result_time"}


def test_references_between_commands(rest):
    cmd = {
        "lead": "crm.lead.add?" + php_build_query({"fields": {"TITLE": "From batch"}}),
        "contact": "crm.contact.add?" + php_build_query({"fields": {"NAME": "Ann"}}),
        "deal": "crm.deal.add?fields[TITLE]=Deal for $result[lead]&fields[CONTACT_ID]=$result[contact]",
        "got": "crm.deal.get?id=$result[deal]",
        "list": "crm.lead.list?filter[>ID]=0",
        "first": "crm.lead.get?id=$result[list][0][ID]",
    }
    answer = rest.call("batch", {"halt": 0, "cmd": cmd})
    assert answer.status_code == 200
    body = answer.json()["result"]
    assert set(body) == SECTIONS
    assert body["result"]["lead"] == 1 and body["result"]["contact"] == 1 and body["result"]["deal"] == 1
    assert body["result"]["got"]["TITLE"] == "Deal for 1"
    assert body["result"]["got"]["CONTACT_ID"] == "1"
    assert body["result"]["first"]["TITLE"] == "From batch"
    assert body["result_error"] == []
    assert body["result_total"] == {"list": 1}
    assert body["result_next"] == []
    assert set(body["result_time"]) == set(cmd)
    assert set(body["result_time"]["got"]) == {"start", "finish", "duration", "processing", "date_start",
                                               "date_finish"}
    assert set(answer.json()["time"]) >= {"start", "finish", "duration", "processing", "date_start", "date_finish"}


def test_shape_matches_documented_sample(rest):
    reference = sample("response_batch")["body"]
    body = rest.call("batch", {"cmd": {"get_user": "user.current", "leads": "crm.lead.list"}}).json()
    assert set(body) == set(reference)
    assert set(body["result"]) == set(reference["result"])
    assert body["result"]["result_error"] == reference["result"]["result_error"] == []
    assert body["result"]["result_total"] == {"leads": 0}


def test_errors_without_halt_continue(rest):
    sandbox_webhook_create(portal=rest.portal, user_id=1, code="crmonly", scopes=["crm"])
    answer = rest.client.post("/sandbox/acme/rest/1/crmonly/batch", data=json.dumps({"cmd": {
        "get_user": "user.current",
        "bad": "crm.lead.get?id=999",
        "nope": "no.such.method",
        "ok": "crm.lead.add?fields[TITLE]=after errors",
    }}), content_type="application/json")
    assert answer.status_code == 200
    body = answer.json()["result"]
    assert body["result_error"]["get_user"]["error"] == "insufficient_scope"
    assert body["result_error"]["bad"] == {"error": "", "error_description": "Not found"}
    assert body["result_error"]["nope"]["error"] == "ERROR_METHOD_NOT_FOUND"
    assert body["result"] == {"ok": 1}
    reference = sample("error_batch_insufficient_scope_halt0")["body"]["result"]
    assert set(reference["result_error"]["get_user"]) == set(body["result_error"]["get_user"])


def test_halt_stops_at_first_error(rest):
    body = rest.call("batch", {"halt": 1, "cmd": {
        "a": "crm.lead.add?fields[TITLE]=one",
        "b": "crm.lead.get?id=999",
        "c": "crm.lead.add?fields[TITLE]=never",
    }}).json()["result"]
    assert body["result"] == {"a": 1}
    assert list(body["result_error"]) == ["b"]
    assert "c" not in body["result_time"]
    assert [r["TITLE"] for r in sandbox_records(portal=rest.portal, entity="lead")] == ["one"]


def test_cmd_as_array_gives_php_lists(rest):
    body = rest.call("batch", {"cmd": ["crm.lead.add?fields[TITLE]=x", "crm.lead.get?id=$result[0]",
                                       "crm.lead.get?id=77"]}).json()["result"]
    # PHP's json_encode: keys 0..n-1 give a JSON list, any gap gives an object
    assert isinstance(body["result"], list) and body["result"][0] == 1 and body["result"][1]["ID"] == "1"
    assert body["result_error"] == {"2": {"error": "", "error_description": "Not found"}}


def test_cmd_array_all_ok_is_a_list(rest):
    body = rest.call("batch", {"cmd": ["crm.lead.add?fields[TITLE]=x", "crm.lead.get?id=$result[0]"]}).json()
    result = body["result"]["result"]
    assert isinstance(result, list) and result[0] == 1 and result[1]["TITLE"] == "x"


def test_batch_in_query_string_double_encoded(rest):
    inner = "crm.lead.add?" + php_build_query({"fields": {"TITLE": "A&B = C"}})
    url = rest.url("batch") + "?halt=0&cmd[x]=" + quote(inner, safe="")
    body = rest.client.get(url).json()["result"]
    assert body["result"] == {"x": 1}
    assert sandbox_records(portal=rest.portal, entity="lead")[0]["TITLE"] == "A&B = C"


def test_batch_by_form_post(rest):
    answer = rest.form("batch", {"halt": 0, "cmd": {"t": "server.time", "u": "user.current"}})
    assert answer.status_code == 200
    assert set(answer.json()["result"]["result"]) == {"t", "u"}


def test_fifty_commands_allowed_fifty_one_refused(rest):
    ok = rest.call("batch", {"cmd": {f"c{i}": "server.time" for i in range(50)}})
    assert ok.status_code == 200 and len(ok.json()["result"]["result"]) == 50
    too_many = rest.call("batch", {"cmd": {f"c{i}": "crm.lead.add?fields[TITLE]=x" for i in range(51)}})
    assert too_many.status_code == 400
    assert too_many.json() == sample("error_batch_length_exceeded")["body"]
    assert sandbox_records(portal=rest.portal, entity="lead") == []


def test_nested_batch_is_405_and_nothing_runs(rest):
    answer = rest.call("batch", {"cmd": {"a": "crm.lead.add?fields[TITLE]=x", "b": "batch?cmd[c]=server.time"}})
    assert answer.status_code == 405
    assert answer.json()["error"] == "ERROR_BATCH_METHOD_NOT_ALLOWED"
    assert sandbox_records(portal=rest.portal, entity="lead") == []
    assert rest.call("batch", {"cmd": {"a": "BATCH.json"}}).status_code == 405


def test_list_sub_calls_report_total_and_next(rest, make_leads):
    make_leads(60)
    body = rest.call("batch", {"cmd": {"p1": "crm.lead.list", "p2": "crm.lead.list?start=50",
                                       "fast": "crm.lead.list?start=-1"}}).json()["result"]
    assert body["result_total"] == {"p1": 60, "p2": 60}
    assert body["result_next"] == {"p1": 50}
    assert len(body["result"]["fast"]) == 50


def test_empty_and_bad_cmd(rest):
    empty = rest.call("batch", {"cmd": {}}).json()["result"]
    assert all(empty[s] == [] for s in SECTIONS)
    bad = rest.call("batch", {"cmd": "crm.lead.list"})
    assert bad.status_code == 400 and bad.json()["error"] == "INVALID_REQUEST"
    bad_item = rest.call("batch", {"cmd": {"a": {"method": "x"}}})
    assert bad_item.status_code == 400


def test_sub_calls_count_as_method_runs(rest):
    rest.call("batch", {"cmd": {"a": "crm.lead.add?fields[TITLE]=x", "b": "crm.lead.add?fields[TITLE]=y"}})
    counters = sandbox_counters(portal=rest.portal)
    assert counters["methods"]["crm.lead.add"] == 2
    assert "batch" not in counters["methods"]


# ------------------------------------------------------------------------- REST 3.0


def test_rest3_batch_array(rest):
    answer = rest.v3("batch", [
        {"method": "tasks.task.add", "query": {"fields": {"title": "A", "creatorId": 1, "responsibleId": 1}}},
        {"method": "tasks.task.get", "query": {"id": 1, "select": ["id", "title"]}},
        {"method": "tasks.task.get", "query": {"id": 99}},
    ])
    assert answer.status_code == 200
    result = answer.json()["result"]
    assert result[0]["item"]["id"] == 1
    assert result[1] == {"item": {"id": 1, "title": "A"}}
    assert result[2]["error"]["code"] == "BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION"


def test_rest3_batch_refuses_v2_cmd_format_and_nesting(rest):
    answer = rest.v3("batch", {"cmd": {"a": "tasks.task.get?id=1"}})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "BITRIX_REST_V3_EXCEPTION_INVALIDSELECTEXCEPTION"
    nested = rest.v3("batch", [{"method": "batch", "query": {}}])
    assert nested.status_code == 405
    too_many = rest.v3("batch", [{"method": "rest.scope.list", "query": {}}] * 51)
    assert too_many.status_code == 400
    assert too_many.json()["error"]["code"] == "ERROR_BATCH_LENGTH_EXCEEDED"
