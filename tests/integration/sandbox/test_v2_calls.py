"""REST v2 over webhooks: envelopes, auth, scopes, CRM CRUD, parameter encodings."""

import json

import pytest

from apps.sandbox.selectors import sandbox_records
from apps.sandbox.services import sandbox_webhook_create

from .conftest import START, sample

pytestmark = pytest.mark.django_db

TIME_KEYS = {"start", "finish", "duration", "processing", "date_start", "date_finish", "operating",
             "operating_reset_at"}


def test_user_current_and_time_object(rest):
    answer = rest.call("user.current")
    assert answer.status_code == 200
    body = answer.json()
    assert body["result"]["ID"] == "1"
    assert set(body["time"]) == TIME_KEYS
    assert body["time"]["start"] == START
    assert body["time"]["date_start"] == "2027-01-15T08:00:00+00:00"
    assert body["time"]["operating_reset_at"] == START + 600
    assert body["time"]["operating"] == pytest.approx(0.1)  # the default simulated cost


def test_server_time_via_get_with_json_suffix(rest):
    answer = rest.client.get(rest.url("server.time.json"))
    assert answer.status_code == 200
    assert answer.json()["result"] == "2027-01-15T08:00:00+00:00"


def test_unknown_method_is_404(rest):
    answer = rest.call("crm.lead.frobnicate")
    assert answer.status_code == 404
    assert answer.json() == {"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"}


def test_method_name_is_case_insensitive(rest):
    assert rest.call("CRM.Lead.Fields").status_code == 200


@pytest.mark.parametrize("path", ["rest/1/wrongcode/user.current", "rest/2/hookcode0123/user.current",
                                  "rest/user.current", "rest/user.current?auth=nope"])
def test_bad_credentials_are_401(client, rest, path):
    answer = client.get(f"/sandbox/acme/{path}")
    assert answer.status_code == 401
    assert answer.json()["error"] == "NO_AUTH_FOUND"


def test_unknown_portal_is_404_in_envelope(client, rest):
    answer = client.get("/sandbox/nosuchportal/rest/1/hookcode0123/user.current")
    assert answer.status_code == 404
    assert set(answer.json()) == {"error", "error_description"}


def test_missing_scope_is_403(client, rest):
    user_id, code = sandbox_webhook_create(portal=rest.portal, user_id=1, scopes=["task"])
    answer = client.post(f"/sandbox/acme/rest/{user_id}/{code}/crm.lead.add", data=json.dumps({"fields": {}}),
                         content_type="application/json")
    assert answer.status_code == 403
    assert answer.json() == sample("error_insufficient_scope")["body"]
    assert sandbox_records(portal=rest.portal, entity="lead") == []
    # basic is always granted; task is granted
    assert client.get(f"/sandbox/acme/rest/{user_id}/{code}/server.time").status_code == 200
    assert client.get(f"/sandbox/acme/rest/{user_id}/{code}/tasks.task.list").status_code == 200


@pytest.mark.parametrize("entity", ["lead", "deal", "contact"])
def test_crm_crud(rest, entity):
    fields = {"TITLE": "Big one", "NAME": "Ann", "OPPORTUNITY": 1500, "ASSIGNED_BY_ID": 7,
              "UF_CRM_1": "custom", "NOT_A_FIELD": "dropped"}
    added = rest.call(f"crm.{entity}.add", {"fields": fields})
    assert added.status_code == 200, added.content
    new_id = added.json()["result"]
    assert isinstance(new_id, int) and new_id == 1

    got = rest.call(f"crm.{entity}.get", {"id": new_id}).json()["result"]
    assert got["ID"] == "1"
    assert got["ASSIGNED_BY_ID"] == "7"
    assert got["UF_CRM_1"] == "custom"
    assert "NOT_A_FIELD" not in got
    if entity != "contact":
        assert got["OPPORTUNITY"] == "1500.00"
        assert got["TITLE"] == "Big one"

    updated = rest.call(f"crm.{entity}.update", {"id": new_id, "fields": {"COMMENTS": "changed"}})
    assert updated.json()["result"] is True
    assert rest.call(f"crm.{entity}.get", {"ID": new_id}).json()["result"]["COMMENTS"] == "changed"

    assert rest.call(f"crm.{entity}.delete", {"id": new_id}).json()["result"] is True
    gone = rest.call(f"crm.{entity}.get", {"id": new_id})
    assert gone.status_code == 400
    assert gone.json() == sample("error_crm_lead_get_not_found")["body"]

    # IDs are never reused
    assert rest.call(f"crm.{entity}.add", {"fields": {"TITLE": "next"}}).json()["result"] == 2


def test_crm_fields(rest):
    result = rest.call("crm.deal.fields").json()["result"]
    assert result["ID"]["isReadOnly"] is True
    assert result["CATEGORY_ID"]["isImmutable"] is True
    assert result["OPPORTUNITY"]["type"] == "double"


@pytest.mark.parametrize("method,params,description", [
    ("crm.lead.get", {}, "ID is not defined or invalid."),
    ("crm.lead.get", {"id": "abc"}, "ID is not defined or invalid."),
    ("crm.lead.get", {"id": -3}, "ID is not defined or invalid."),
    ("crm.lead.add", {"fields": "TITLE"}, "Parameter 'fields' must be array."),
    ("crm.lead.add", {}, "Parameter 'fields' must be array."),
    ("crm.lead.add", {"fields": {"OPPORTUNITY": "lots"}}, "Field 'OPPORTUNITY' must be a number."),
    ("crm.lead.add", {"fields": {"ASSIGNED_BY_ID": {"x": 1}}}, "Field 'ASSIGNED_BY_ID' must be integer."),
    ("crm.lead.list", {"filter": "ID>1"}, "Parameter 'filter' must be array."),
    ("crm.lead.update", {"id": 99, "fields": {"TITLE": "x"}}, "Not found"),
])
def test_bad_params_are_400_in_envelope(rest, method, params, description):
    answer = rest.call(method, params)
    assert answer.status_code == 400
    assert answer.json() == {"error": "", "error_description": description}


def test_invalid_json_body_is_400(rest):
    answer = rest.client.post(rest.url("crm.lead.add"), data="{nope", content_type="application/json")
    assert answer.status_code == 400
    assert answer.json()["error"] == "INVALID_REQUEST"


def test_form_post_and_get_query_with_php_nested_keys(rest):
    by_form = rest.form("crm.lead.add", {"fields": {"TITLE": "Form lead", "PHONE": [{"VALUE": "+1 555",
                                                                                        "VALUE_TYPE": "WORK"}]}})
    assert by_form.status_code == 200, by_form.content
    lead_id = by_form.json()["result"]
    by_get = rest.get("crm.lead.get", {"id": lead_id})
    lead = by_get.json()["result"]
    assert lead["TITLE"] == "Form lead"
    assert lead["PHONE"][0]["VALUE"] == "+1 555"
    assert lead["HAS_PHONE"] == "Y"
    raw = rest.client.get(rest.url("crm.lead.list") + "?select[0]=ID&select[1]=TITLE&filter[%3DID]=" + str(lead_id))
    assert raw.json()["result"] == [{"ID": str(lead_id), "TITLE": "Form lead"}]


def test_get_answer_matches_list_sample_shape(rest, make_leads):
    make_leads(2)
    body = rest.call("crm.lead.list").json()
    reference = sample("response_crm_lead_list")["body"]
    assert isinstance(body["result"], list)
    assert set(reference["result"][0]) - set(body["result"][0]) <= {
        "ADDRESS_2", "ADDRESS_CITY", "ADDRESS_POSTAL_CODE", "ADDRESS_REGION", "ADDRESS_PROVINCE",
        "ADDRESS_COUNTRY", "ADDRESS_COUNTRY_CODE", "ADDRESS_LOC_ADDR_ID", "UTM_SOURCE", "UTM_MEDIUM",
        "UTM_CAMPAIGN", "UTM_CONTENT", "UTM_TERM", "LAST_ACTIVITY_BY", "LAST_ACTIVITY_TIME", "HAS_IMOL",
        "MOVED_BY_ID", "MOVED_TIME", "DATE_CLOSED", "UF_CRM_1704817278", "UF_CRM_1706782596092",
        "UF_CRM_1708952993785",
    }
    assert all(isinstance(row["ID"], str) for row in body["result"])


def test_unsupported_http_method(rest):
    answer = rest.client.delete(rest.url("user.current"))
    assert answer.status_code == 405
    assert answer.json()["error"] == "INVALID_REQUEST"
