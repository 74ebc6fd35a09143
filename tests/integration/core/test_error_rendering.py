"""Every API error, 400 to 500, 404 and 405 included, is rendered by apps.core.api.error_response:
JSON with `error.code` and `error.message`, whether DEBUG is on or off, whatever the path."""

import json

import pytest
from django.core.exceptions import SuspiciousOperation
from django.test import Client, override_settings

from apps.core.api import json_endpoint
from apps.core.views import bad_request, not_found, server_error

pytestmark = pytest.mark.django_db

UNKNOWN = ["/api/v1/nothing", "/api/v1/plans/", "/api/v1/capabilities/", "/api/v1/openapi.json/", "/api/",
           "/api", "/healthz/", "/readyz/", "/api/v1/plans/0b7c5e2a-3f6d-4c1e-9a8b-2d4f6e8a0c1e/cancel/"]


def assert_json_error(response, status, code):
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    error = json.loads(response.content)["error"]
    assert error["code"] == code
    assert error["message"]
    return error


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("method", ["get", "post", "delete"])
@pytest.mark.parametrize("path", UNKNOWN)
def test_unknown_api_paths_are_json_404_with_debug_on_or_off(client, settings, debug, method, path):
    settings.DEBUG = debug
    response = getattr(client, method)(path)
    assert_json_error(response, 404, "not_found")


def test_unknown_api_path_is_not_redirected_by_append_slash(client, settings):
    settings.APPEND_SLASH = True
    assert client.get("/api/v1/capabilities/").status_code == 404
    assert client.get("/api/v1/plans/x/cancel/").status_code == 404


def test_unknown_api_post_is_json_404_even_with_csrf_checks():
    response = Client(enforce_csrf_checks=True).post("/api/v1/nothing", "{}", content_type="application/json")
    assert_json_error(response, 404, "not_found")


def test_other_unknown_paths_keep_djangos_page(client):
    response = client.get("/nothing-here")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("path", ["/api/v1/x", "/healthz/x", "/readyz"])
def test_handlers_render_json_for_api_paths(rf, path):
    request = rf.get(path)
    assert_json_error(not_found(request), 404, "not_found")
    assert_json_error(bad_request(request), 400, "invalid_request")
    assert_json_error(server_error(request), 500, "internal_error")


def test_handlers_render_html_elsewhere(rf):
    request = rf.get("/admin/x")
    for response in (not_found(request), bad_request(request), server_error(request)):
        assert response["Content-Type"].startswith("text/html")


@override_settings(ROOT_URLCONF="tests.integration.core.urls_boom")
def test_an_exception_outside_json_endpoint_is_a_json_500_on_api_paths():
    client = Client(raise_request_exception=False)
    error = assert_json_error(client.get("/api/v1/boom"), 500, "internal_error")
    assert "boom" not in json.dumps(error)
    assert client.get("/elsewhere/boom")["Content-Type"].startswith("text/html")


def test_an_exception_in_a_json_endpoint_is_a_json_500(rf, caplog):
    @json_endpoint("GET")
    def broken(request):
        raise KeyError("secret detail")

    request = rf.get("/api/v1/broken")
    request.request_id = "req-1"
    error = assert_json_error(broken(request), 500, "internal_error")
    assert error["request_id"] == "req-1"
    assert "secret detail" not in json.dumps(error)
    assert "Unhandled error" in caplog.text


def test_a_suspicious_operation_in_a_json_endpoint_is_a_400(rf):
    @json_endpoint("GET")
    def suspicious(request):
        raise SuspiciousOperation("nope")

    assert_json_error(suspicious(rf.get("/api/v1/s")), 400, "invalid_request")


def test_a_bad_host_on_an_api_path_is_a_json_400(client, settings):
    settings.ALLOWED_HOSTS = ["testserver"]
    assert_json_error(client.get("/api/v1/plans", HTTP_HOST="evil.example"), 400, "invalid_request")


@pytest.mark.parametrize("path, method, allow", [
    ("/api/v1/plans", "put", "GET, POST"), ("/api/v1/capabilities", "post", "GET"),
    ("/api/v1/plans/x/cancel", "get", "POST"), ("/healthz", "delete", "GET"),
    ("/api/v1/openapi.json", "options", "GET"),
])
def test_405_is_json_with_allow(client, path, method, allow):
    response = getattr(client, method)(path)
    assert_json_error(response, 405, "method_not_allowed")
    assert response["Allow"] == allow
