"""Envelope parsing against the protocol samples (copied from shared/bitrix24/samples)."""

import json
from pathlib import Path

import pytest

from apps.bitrix.envelope import batch_result, call_result, decode_body, error_from_body
from apps.bitrix.errors import AuthFailed, OutcomeUnknown, OverloadBlocked, PortalError, WaitForReset

SAMPLES = Path(__file__).parent / "samples"


def sample(name):
    return json.loads((SAMPLES / f"{name}.json").read_text())


def test_list_response():
    s = sample("response_crm_lead_list")
    assert error_from_body(s["http_status"], s["body"]) is None
    res = call_result(s["body"], method="crm.lead.list")
    assert res.total == 654 and res.next == 50 and len(res.result) == 2
    assert res.time["operating"] == 0
    assert res.raw is s["body"]


def test_rest3_item_response():
    s = sample("response_rest3_item")
    assert error_from_body(200, s["body"]) is None
    res = call_result(s["body"], method="tasks.task.get")
    assert res.result["item"]["id"] == 42
    assert res.time["operating_reset_at"] == 1787220142
    assert res.total is None and res.next is None


def test_batch_response_with_empty_sections_as_lists():
    s = sample("response_batch")
    res = batch_result(s["body"])
    assert res.results["get_user"]["NAME"] == "John"
    assert res.results["get_department"][0]["NAME"] == "DEMO"
    assert res.errors == {} and res.nexts == {}
    assert res.totals == {"get_department": 1}
    assert set(res.times) == {"get_user", "get_department"}


def test_batch_sub_errors():
    s = sample("error_batch_insufficient_scope_halt0")
    res = batch_result(s["body"])
    assert res.results == {}
    assert res.errors["get_user"] == {"error": "insufficient_scope", "error_description": ""}
    assert res.times == {}


@pytest.mark.parametrize(
    "name,cls,code",
    [
        ("error_operation_time_limit", WaitForReset, "OPERATION_TIME_LIMIT"),
        ("error_unexpected_answer", OutcomeUnknown, "ERROR_UNEXPECTED_ANSWER"),
        ("error_overload_limit", OverloadBlocked, "OVERLOAD_LIMIT"),
        ("error_portal_deleted", PortalError, "PORTAL_DELETED"),
        ("error_insufficient_scope", PortalError, "insufficient_scope"),
        ("error_method_confirm_waiting", PortalError, "METHOD_CONFIRM_WAITING"),
        ("error_invalid_credentials", PortalError, "INVALID_CREDENTIALS"),
        ("error_user_access_error", PortalError, "user_access_error"),
        ("error_crm_lead_get_not_found", PortalError, None),
        ("error_biconnector_status_200", PortalError, "VALIDATION_ID_NOT_PROVIDED"),
        ("error_rest3_access_denied", PortalError, "BITRIX_REST_V3_EXCEPTION_ACCESSDENIEDEXCEPTION"),
        ("error_rest3_invalid_json", PortalError, None),
        ("error_rest3_unknown_dto_property", PortalError, None),
        ("error_batch_length_exceeded", PortalError, "ERROR_BATCH_LENGTH_EXCEEDED"),
        ("error_oauth_invalid_grant", AuthFailed, "invalid_grant"),
    ],
)
def test_error_samples(name, cls, code):
    s = sample(name)
    status = s.get("http_status") or 400
    err = error_from_body(status, s["body"], method=s.get("method"))
    assert type(err) is cls
    if code:
        assert err.code == code
    assert err.http_status == status
    assert err.as_dict()["code"] == err.code


def test_rest3_validation_is_kept():
    s = sample("error_rest3_unknown_dto_property")
    err = error_from_body(s["http_status"], s["body"])
    assert err.code.startswith("BITRIX_REST_V3_EXCEPTION_")
    assert isinstance(err.description, str)


def test_unparseable_answer_is_outcome_unknown():
    with pytest.raises(OutcomeUnknown) as info:
        decode_body(200, b"<html>oops</html>")
    assert info.value.code == "ERROR_UNPARSEABLE_ANSWER"
    with pytest.raises(OutcomeUnknown):
        decode_body(502, b"\xff\xfe")


def test_success_status_without_result_is_outcome_unknown():
    err = error_from_body(200, {"something": 1})
    assert isinstance(err, OutcomeUnknown)
    err = error_from_body(200, ["not", "a", "dict"])
    assert isinstance(err, OutcomeUnknown)


def test_status_error_without_error_key():
    assert isinstance(error_from_body(503, {}), OutcomeUnknown)
    assert isinstance(error_from_body(404, {}), PortalError)
