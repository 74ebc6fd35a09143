"""apps.core.api.error_response: the one renderer of API errors."""

import json

from apps.core.api import MAX_MESSAGE_CHARS, error_response
from apps.core.exceptions import InternalError, InvalidRequest, MethodNotAllowed, RateLimited


def body(response):
    return json.loads(response.content)["error"]


def test_shape_and_content_type():
    response = error_response(InvalidRequest("Bad.", field="portal"))
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert body(response) == {"code": "invalid_request", "message": "Bad.", "field": "portal"}


def test_405_carries_allow():
    response = error_response(MethodNotAllowed("Use GET, POST.", allowed=["GET", "POST"]))
    assert response.status_code == 405
    assert response["Allow"] == "GET, POST"


def test_429_carries_retry_after():
    response = error_response(RateLimited(retry_after=7))
    assert response["Retry-After"] == "7"


def test_500_says_nothing_about_the_cause():
    response = error_response(InternalError())
    assert response.status_code == 500
    assert body(response) == {"code": "internal_error", "message": "Internal error; it has been logged."}


def test_long_messages_are_cut_and_surrogates_are_escaped():
    response = error_response(InvalidRequest("'\ud800" + "x" * 10_000 + "' is too long", field="reason"))
    message = body(response)["message"]
    assert len(message) == MAX_MESSAGE_CHARS + 1
    assert b"\\ud800" in response.content  # escaped, so the answer is always valid UTF-8
