"""The fault switch: each documented system error on demand (service, command, admin), and the
transport's handling of each, end to end over real HTTP."""

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.core.exceptions import InvalidRequest
from apps.sandbox.errors import FAULT_ERRORS
from apps.sandbox.models import SandboxPortal
from apps.sandbox.services import sandbox_clear_fault, sandbox_clear_faults, sandbox_set_fault, sandbox_set_faults

from .conftest import sample

V2_ERRORS = [key for key in FAULT_ERRORS if key != "ACCESSDENIEDEXCEPTION"]
SAMPLES = {"INVALID_CREDENTIALS": "error_invalid_credentials", "OVERLOAD_LIMIT": "error_overload_limit",
           "PORTAL_DELETED": "error_portal_deleted", "user_access_error": "error_user_access_error",
           "METHOD_CONFIRM_WAITING": "error_method_confirm_waiting",
           "ERROR_UNEXPECTED_ANSWER": "error_unexpected_answer"}


@pytest.mark.django_db
@pytest.mark.parametrize("key", V2_ERRORS)
def test_each_error_on_v2(rest, key):
    sandbox_set_fault(portal=rest.portal, error=key)
    answer = rest.call("crm.lead.list")
    status, code, description, _ = FAULT_ERRORS[key]
    assert answer.status_code == status
    assert answer.json() == {"error": code, "error_description": description}
    if key in SAMPLES:  # the documented status and code
        documented = sample(SAMPLES[key])
        assert documented["http_status"] == status and documented["body"]["error"] == code
    sandbox_clear_fault(portal=rest.portal)
    assert rest.call("crm.lead.list").status_code == 200


@pytest.mark.django_db
def test_rest3_access_denied_only_on_rest3(rest):
    sandbox_set_fault(portal=rest.portal, error="ACCESSDENIEDEXCEPTION")
    assert rest.call("crm.lead.list").status_code == 200
    answer = rest.v3("tasks.task.list", {})
    assert answer.status_code == 403
    assert answer.json() == {"error": {"code": "BITRIX_REST_V3_EXCEPTION_ACCESSDENIEDEXCEPTION",
                                       "message": "Access denied"}}


@pytest.mark.django_db
def test_errors_on_rest3_use_its_envelope(rest):
    sandbox_set_fault(portal=rest.portal, error="OVERLOAD_LIMIT")
    answer = rest.v3("tasks.task.list", {})
    assert answer.status_code == 503 and answer.json()["error"]["code"] == "OVERLOAD_LIMIT"


@pytest.mark.django_db
def test_calls_count_down_and_methods_limit(rest):
    sandbox_set_fault(portal=rest.portal, error="METHOD_CONFIRM_DENIED", calls=2)
    assert [rest.call("server.time").status_code for _ in range(3)] == [403, 403, 200]
    assert SandboxPortal.objects.get(pk=rest.portal.pk).fault_error == ""
    sandbox_set_faults(portal=rest.portal, methods=["crm.lead.add"])
    sandbox_set_fault(portal=rest.portal, error="user_access_error")
    assert rest.call("server.time").status_code == 200
    assert rest.call("crm.lead.add", {"fields": {"TITLE": "x"}}).status_code == 403


@pytest.mark.django_db
def test_moved_answers_302_to_the_new_address(rest):
    sandbox_set_fault(portal=rest.portal, error="MOVED", moved_to="https://new.example.test/")
    answer = rest.client.post(rest.url("crm.lead.add") + "?x=1", data=json.dumps({"fields": {"TITLE": "lost"}}),
                              content_type="application/json")
    assert answer.status_code == 302
    assert answer["Location"] == "https://new.example.test/rest/1/hookcode0123/crm.lead.add?x=1"
    assert rest.call("crm.lead.list").status_code == 302
    sandbox_clear_fault(portal=rest.portal)
    assert rest.call("crm.lead.list").json()["total"] == 0  # nothing ran while it was moved


@pytest.mark.django_db
def test_https_required_for_plain_http(rest):
    sandbox_set_fault(portal=rest.portal, error="", require_https=True)
    plain = rest.call("server.time")
    assert plain.status_code == 400
    assert plain.json() == {"error": "INVALID_REQUEST", "error_description": "Https required."}
    secure = rest.client.post(rest.url("server.time"), data="{}", content_type="application/json", secure=True)
    assert secure.status_code == 200


@pytest.mark.django_db
def test_service_validation(rest):
    with pytest.raises(InvalidRequest):
        sandbox_set_fault(portal=rest.portal, error="NO_SUCH")
    with pytest.raises(InvalidRequest):
        sandbox_set_fault(portal=rest.portal, error="MOVED", moved_to="")
    with pytest.raises(InvalidRequest):
        sandbox_set_fault(portal=rest.portal, error="PORTAL_DELETED", calls=0)


@pytest.mark.django_db
def test_command(rest, capsys):
    call_command("sandbox_fault", "acme", "PORTAL_DELETED", "--calls", "1")
    assert "PORTAL_DELETED (1 call(s))" in capsys.readouterr().out
    assert rest.call("server.time").status_code == 500
    assert rest.call("server.time").status_code == 200
    call_command("sandbox_fault", "acme", "MOVED", "--moved-to", "https://moved.example.test")
    assert rest.call("server.time")["Location"].startswith("https://moved.example.test/rest/")
    call_command("sandbox_fault", "acme", "--require-https")
    call_command("sandbox_fault", "acme", "--clear")
    assert rest.call("server.time").status_code == 200
    with pytest.raises(CommandError):
        call_command("sandbox_fault", "nosuch", "PORTAL_DELETED")
    with pytest.raises(CommandError):
        call_command("sandbox_fault", "acme", "MOVED", "--moved-to", "")


@pytest.mark.django_db
def test_admin_switch(admin_client, rest):
    url = f"/admin/sandbox/sandboxportal/{rest.portal.pk}/change/"
    assert admin_client.get(url).status_code == 200
    answer = admin_client.post(url, {"fault_error": "OVERLOAD_LIMIT", "fault_error_remaining": "-1", "moved_to": ""})
    assert answer.status_code == 302
    assert rest.call("server.time").status_code == 503
    bad = admin_client.post(url, {"fault_error": "MOVED", "fault_error_remaining": "-1", "moved_to": ""})
    assert bad.status_code == 200  # the form shows the error; nothing changed
    assert SandboxPortal.objects.get(pk=rest.portal.pk).fault_error == "OVERLOAD_LIMIT"


@pytest.mark.django_db
def test_clear_faults_clears_the_switch_too(rest):
    sandbox_set_fault(portal=rest.portal, error="PORTAL_DELETED", require_https=True)
    sandbox_clear_faults(portal=rest.portal)
    assert rest.call("server.time").status_code == 200
