"""The error taxonomy: every row of FACTS §6 (system errors, other errors, OAuth server errors)."""

import pytest

from apps.bitrix.errors import (
    AuthFailed,
    BitrixError,
    NotSent,
    OutcomeUnknown,
    OverloadBlocked,
    PortalError,
    PortalMoved,
    WaitForReset,
    classify_error,
)

# (http status as documented, code, expected class)
SYSTEM_ERRORS = [
    (500, "INTERNAL_SERVER_ERROR", OutcomeUnknown),
    (500, "ERROR_UNEXPECTED_ANSWER", OutcomeUnknown),
    (503, "QUERY_LIMIT_EXCEEDED", NotSent),
    (405, "ERROR_BATCH_METHOD_NOT_ALLOWED", PortalError),
    (400, "ERROR_BATCH_LENGTH_EXCEEDED", PortalError),
    (401, "NO_AUTH_FOUND", AuthFailed),
    (400, "INVALID_REQUEST", PortalError),
    (503, "OVERLOAD_LIMIT", OverloadBlocked),
    (403, "ACCESS_DENIED", PortalError),
    (403, "INVALID_CREDENTIALS", PortalError),
    (401, "INVALID_CREDENTIALS", PortalError),  # im.chat.add's page says 401
    (404, "ERROR_MANIFEST_IS_NOT_AVAILABLE", PortalError),
    (403, "insufficient_scope", PortalError),
    (401, "expired_token", AuthFailed),
    (403, "user_access_error", PortalError),
    (500, "PORTAL_DELETED", PortalError),
]
OTHER_ERRORS = [
    (429, "OPERATION_TIME_LIMIT", WaitForReset),
    (404, "ERROR_METHOD_NOT_FOUND", PortalError),
    (401, "METHOD_CONFIRM_WAITING", PortalError),
    (403, "METHOD_CONFIRM_DENIED", PortalError),
    (None, "WRONG_AUTH_TYPE", PortalError),
    (400, "ERROR_EVENT_NOT_FOUND", PortalError),
    (401, "invalid_token", AuthFailed),
]
OAUTH_ERRORS = [
    (400, "invalid_request", PortalError),
    (401, "invalid_client", AuthFailed),
    (400, "insufficient_scope", PortalError),
    (400, "invalid_scope", PortalError),
    (400, "invalid_grant", AuthFailed),
    (402, "PAYMENT_REQUIRED", AuthFailed),
    (None, "invalid_grant", AuthFailed),
]
REST3_ERRORS = [
    (400, "BITRIX_REST_V3_EXCEPTION_VALIDATION_REQUESTVALIDATIONEXCEPTION", PortalError),
    (400, "BITRIX_REST_V3_EXCEPTION_INVALIDJSONEXCEPTION", PortalError),
    (400, "BITRIX_REST_V3_EXCEPTION_UNKNOWNDTOPROPERTYEXCEPTION", PortalError),
    (400, "BITRIX_REST_V3_EXCEPTION_UNKNOWNFILTEROPERATOREXCEPTION", PortalError),
    (400, "BITRIX_REST_V3_EXCEPTION_ENTITYNOTFOUNDEXCEPTION", PortalError),
    (403, "BITRIX_REST_V3_EXCEPTION_ACCESSDENIEDEXCEPTION", PortalError),
    (403, "BITRIX_REST_V3_EXCEPTION_INSUFFICIENTSCOPEEXCEPTION", PortalError),
    (422, "BITRIX_REST_V3_EXCEPTION_IDEMPOTENCYKEYREUSEDEXCEPTION", PortalError),
]


@pytest.mark.parametrize("status,code,cls", SYSTEM_ERRORS + OTHER_ERRORS + OAUTH_ERRORS + REST3_ERRORS)
def test_every_documented_code_maps_to_one_class(status, code, cls):
    assert classify_error(status, code) is cls


@pytest.mark.parametrize(
    "status,cls",
    [
        (500, OutcomeUnknown),
        (502, OutcomeUnknown),
        (503, OutcomeUnknown),
        (504, OutcomeUnknown),
        (429, NotSent),
        (401, AuthFailed),
        (400, PortalError),
        (403, PortalError),
        (404, PortalError),
        (200, PortalError),  # an error body with 200 (biconnector) is an application error
        (302, PortalMoved),
        (301, PortalMoved),
    ],
)
def test_unknown_codes_fall_back_on_the_status(status, cls):
    assert classify_error(status, "SOME_UNDOCUMENTED_CODE") is cls
    assert classify_error(status, None) is cls


def test_code_wins_over_status():
    # PORTAL_DELETED comes with 500 but nothing ran; METHOD_CONFIRM_WAITING comes with 401.
    assert classify_error(500, "PORTAL_DELETED") is PortalError
    assert classify_error(401, "METHOD_CONFIRM_WAITING") is PortalError
    assert classify_error(200, "QUERY_LIMIT_EXCEEDED") is NotSent


def test_hierarchy_is_what_the_executor_expects():
    assert issubclass(WaitForReset, NotSent)
    assert issubclass(PortalMoved, PortalError)
    assert issubclass(OverloadBlocked, PortalError)
    for cls in (NotSent, OutcomeUnknown, AuthFailed, PortalError):
        assert issubclass(cls, BitrixError)
    assert not issubclass(OutcomeUnknown, NotSent)


def test_error_attributes_and_as_dict():
    err = NotSent("QUERY_LIMIT_EXCEEDED", "Too many requests", http_status=503, retry_after=1.5)
    assert (err.code, err.description, err.http_status, err.retry_after) == (
        "QUERY_LIMIT_EXCEEDED", "Too many requests", 503, 1.5,
    )
    assert err.as_dict() == {
        "code": "QUERY_LIMIT_EXCEEDED", "description": "Too many requests", "http_status": 503, "retry_after": 1.5,
    }
    moved = PortalMoved("PORTAL_MOVED", "moved", http_status=302, location="https://new.example/rest/1/***/x")
    assert moved.location.endswith("***/x")
    assert moved.as_dict()["location"] == moved.location
    plain = BitrixError()
    assert plain.code == "BITRIX_ERROR" and plain.http_status is None and plain.retry_after is None
