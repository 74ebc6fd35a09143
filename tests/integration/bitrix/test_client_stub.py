"""BitrixClient against a local stub HTTP server (real HTTP, real database)."""

import logging
import socket
import time

import pytest
from django.core import mail

from apps.bitrix import limiter
from apps.bitrix.client import BitrixClient
from apps.bitrix.errors import (
    AuthFailed,
    BatchTooLong,
    NotSent,
    OutcomeUnknown,
    PortalError,
    PortalMoved,
    WaitForReset,
)
from apps.bitrix.http import USER_AGENT
from apps.bitrix.models import MethodBlock, PortalLimiter
from apps.portals.models import Credential, CredentialStatus

pytestmark = pytest.mark.django_db(transaction=True)

OK = {"result": {"ID": "1"}, "time": {"start": 1.0, "finish": 1.1, "operating": 0.1}}


def test_webhook_call_url_headers_body(stub, webhook_portal):
    stub.respond = lambda seen: (200, {**OK, "total": 3, "next": 2}, {})
    res = BitrixClient(webhook_portal).call("crm.lead.list", {"select": ["ID"], "filter": {">ID": 5}})
    assert res.result == {"ID": "1"} and res.total == 3 and res.next == 2
    (seen,) = stub.requests
    assert seen.method == "POST"
    assert seen.path == "/p/rest/1/s3cr3twebhookcode/crm.lead.list"
    assert seen.headers["Content-Type"].startswith("application/json")
    assert seen.headers["Accept"] == "application/json"
    assert seen.headers["User-Agent"] == USER_AGENT
    assert seen.json == {"select": ["ID"], "filter": {">ID": 5}}


def test_json_suffix_and_bad_names(stub, webhook_portal):
    client = BitrixClient(webhook_portal)
    client.call("crm.lead.get.json", {"id": 1})
    assert stub.requests[-1].path.endswith("/crm.lead.get")
    for bad in ("../../admin", "crm.lead.get?x=1", "crm lead", "", "a/b"):
        with pytest.raises(PortalError) as info:
            client.call(bad, {})
        assert info.value.not_sent
    assert len(stub.requests) == 1


def test_rest3_only_method_goes_to_api(stub, webhook_portal):
    from apps.policy.catalog import all_methods

    only3 = next(m.name for m in all_methods() if m.rest3 and not m.v2)
    BitrixClient(webhook_portal).call(only3, {"id": 1})
    assert stub.requests[-1].path == f"/p/rest/api/1/s3cr3twebhookcode/{only3}"
    BitrixClient(webhook_portal).call("tasks.task.get", {"id": 1})  # both versions: v2 by default
    assert stub.requests[-1].path == "/p/rest/1/s3cr3twebhookcode/tasks.task.get"
    BitrixClient(webhook_portal).call("tasks.task.get", {"id": 1}, rest3=True)
    assert stub.requests[-1].path == "/p/rest/api/1/s3cr3twebhookcode/tasks.task.get"


def test_secrets_never_reach_log_records(stub, webhook_portal, oauth_portal, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("urllib3", "urllib3.connectionpool", "apps.bitrix"):
        caplog.set_level(logging.DEBUG, logger=name)
    BitrixClient(webhook_portal).call("user.current", {})
    stub.respond = lambda seen: (302, {}, {"Location": f"{stub.url}/new/rest/1/s3cr3twebhookcode/user.current"})
    with pytest.raises(PortalMoved):
        BitrixClient(webhook_portal).call("user.current", {})
    stub.respond = lambda seen: (200, OK, {})
    BitrixClient(oauth_portal).call("user.current", {})
    text = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records)
    assert "user.current" in text and "stubhook" in text
    assert "s3cr3twebhookcode" not in text
    assert "accesstoken-old" not in text
    assert any(r.name.startswith("urllib3") for r in caplog.records), "urllib3 DEBUG lines were captured"


def test_oauth_auth_in_json_body(stub, oauth_portal):
    BitrixClient(oauth_portal).call("crm.lead.get", {"id": 7})
    seen = stub.requests[-1]
    assert seen.path == "/p/rest/crm.lead.get"
    assert seen.json == {"id": 7, "auth": "accesstoken-old"}
    assert "auth" not in seen.query


def test_redirect_is_reported_not_followed(stub, webhook_portal):
    stub.respond = lambda seen: (302, {}, {"Location": "https://moved.example/rest/1/s3cr3twebhookcode/crm.lead.add"})
    with pytest.raises(PortalMoved) as info:
        BitrixClient(webhook_portal).call("crm.lead.add", {"fields": {"TITLE": "x"}})
    assert len(stub.requests) == 1 and stub.requests[0].method == "POST"
    assert info.value.http_status == 302
    assert info.value.location == "https://moved.example/rest/1/***/crm.lead.add"
    assert "s3cr3t" not in str(info.value.as_dict())


def test_expired_token_refreshes_once_and_retries(stub, oauth_portal):
    def respond(seen):
        if seen.path == "/oauth/token/":
            assert seen.method == "GET"
            q = {k: v[0] for k, v in seen.query.items()}
            assert q == {"grant_type": "refresh_token", "client_id": "local.stub.1",
                         "client_secret": "clientsecretvalue", "refresh_token": "refreshtoken-old"}
            return 200, {"access_token": "accesstoken-new", "refresh_token": "refreshtoken-new",
                         "expires_in": 3600, "expires": int(time.time()) + 3600, "scope": "crm"}, {}
        if seen.json.get("auth") == "accesstoken-old":
            return 401, {"error": "expired_token", "error_description": "The access token provided has expired."}, {}
        return 200, OK, {}

    stub.respond = respond
    res = BitrixClient(oauth_portal).call("crm.lead.get", {"id": 1})
    assert res.result == {"ID": "1"}
    assert [s.path for s in stub.requests] == ["/p/rest/crm.lead.get", "/oauth/token/", "/p/rest/crm.lead.get"]
    cred = Credential.objects.get(portal=oauth_portal)
    assert (cred.access_token, cred.refresh_token) == ("accesstoken-new", "refreshtoken-new")
    assert cred.access_expires_at is not None and cred.status == CredentialStatus.OK


def test_still_failing_after_refresh_is_auth_failed(stub, oauth_portal):
    def respond(seen):
        if seen.path == "/oauth/token/":
            return 200, {"access_token": "accesstoken-new", "refresh_token": "refreshtoken-new", "expires_in": 3600}, {}
        return 401, {"error": "invalid_token"}, {}

    stub.respond = respond
    with pytest.raises(AuthFailed):
        BitrixClient(oauth_portal).call("crm.lead.get", {"id": 1})
    assert len([s for s in stub.requests if s.path == "/oauth/token/"]) == 1
    assert Credential.objects.get(portal=oauth_portal).status == CredentialStatus.BROKEN


def test_invalid_grant_marks_broken_and_alerts(stub, oauth_portal, settings, caplog):
    settings.ADMINS = [("Ops", "ops@example.com")]
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

    def respond(seen):
        if seen.path == "/oauth/token/":
            return 400, {"error": "invalid_grant", "error_description": "Invalid grant"}, {}
        return 401, {"error": "expired_token"}, {}

    stub.respond = respond
    with pytest.raises(AuthFailed) as info:
        BitrixClient(oauth_portal).call("crm.lead.get", {"id": 1})
    assert info.value.code == "invalid_grant"
    cred = Credential.objects.get(portal=oauth_portal)
    assert cred.status == CredentialStatus.BROKEN and "invalid_grant" in cred.status_detail
    assert len(mail.outbox) == 1 and "stuboauth" in mail.outbox[0].subject
    assert any(r.levelno == logging.ERROR and "broken" in r.getMessage() for r in caplog.records)
    # No further calls: a broken credential fails before sending.
    count = len(stub.requests)
    with pytest.raises(AuthFailed):
        BitrixClient(oauth_portal).call("crm.lead.get", {"id": 1})
    assert len(stub.requests) == count


def test_a_revoked_credential_fails_before_sending(stub, webhook_portal):
    from apps.portals.services import credential_set_status

    credential_set_status(portal=webhook_portal, status=CredentialStatus.REVOKED, code="ONAPPUNINSTALL")
    with pytest.raises(AuthFailed) as info:
        BitrixClient(webhook_portal).call("user.current")
    assert info.value.code == "CREDENTIAL_REVOKED"
    assert stub.requests == []


def test_webhook_rejected_is_auth_failed(stub, webhook_portal):
    stub.respond = lambda seen: (401, {"error": "NO_AUTH_FOUND", "error_description": "Wrong authorization data"}, {})
    with pytest.raises(AuthFailed):
        BitrixClient(webhook_portal).call("user.current", {})
    assert Credential.objects.get(portal=webhook_portal).status == CredentialStatus.BROKEN


def test_query_limit_is_not_sent_and_saturates_limiter(stub, webhook_portal):
    stub.respond = lambda seen: (503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}, {})
    with pytest.raises(NotSent) as info:
        BitrixClient(webhook_portal).call("user.current", {})
    assert info.value.code == "QUERY_LIMIT_EXCEEDED" and info.value.retry_after >= 0.5
    assert limiter.limiter_level(portal_id=webhook_portal.pk, rate=webhook_portal.rate_per_second) >= 49


def test_operation_time_limit_holds_the_method(stub, webhook_portal):
    reset_at = time.time() + 120
    stub.respond = lambda seen: (200, {"result": 1, "time": {"operating": 470, "operating_reset_at": reset_at}}, {})
    client = BitrixClient(webhook_portal)
    client.call("crm.lead.list", {})
    stub.respond = lambda seen: (429, {"error": "OPERATION_TIME_LIMIT"}, {})
    with pytest.raises(WaitForReset) as info:
        client.call("crm.lead.list", {})
    assert 100 < info.value.retry_after <= 121
    assert MethodBlock.objects.filter(portal=webhook_portal, method="crm.lead.list").exists()
    count = len(stub.requests)
    with pytest.raises(WaitForReset):
        BitrixClient(webhook_portal).call("CRM.Lead.List", {})
    with pytest.raises(WaitForReset):  # a batch holding that method is not sent either
        BitrixClient(webhook_portal).batch([("a", "crm.lead.list", {}), ("b", "user.current", {})])
    assert len(stub.requests) == count
    stub.respond = lambda seen: (200, OK, {})
    BitrixClient(webhook_portal).call("crm.deal.list", {})  # other methods keep working
    assert len(stub.requests) == count + 1


def test_operation_time_limit_without_reset_holds_ten_minutes(stub, webhook_portal):
    stub.respond = lambda seen: (429, {"error": "OPERATION_TIME_LIMIT"}, {})
    with pytest.raises(WaitForReset) as info:
        BitrixClient(webhook_portal).call("crm.item.list", {})
    assert 590 < info.value.retry_after <= 600


def test_server_errors_and_garbage_are_outcome_unknown(stub, webhook_portal):
    stub.respond = lambda seen: (500, {"error": "INTERNAL_SERVER_ERROR", "error_description": "x"}, {})
    with pytest.raises(OutcomeUnknown):
        BitrixClient(webhook_portal).call("crm.lead.add", {})
    stub.respond = lambda seen: (200, b"<html>gateway</html>", {})
    with pytest.raises(OutcomeUnknown) as info:
        BitrixClient(webhook_portal).call("crm.lead.add", {})
    assert info.value.code == "ERROR_UNPARSEABLE_ANSWER"
    stub.respond = lambda seen: (403, {"error": "ACCESS_DENIED", "error_description": "no"}, {})
    with pytest.raises(PortalError):
        BitrixClient(webhook_portal).call("crm.lead.add", {})


def test_connection_refused_is_not_sent_and_releases_the_slot(db, webhook_portal):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    webhook_portal.base_url = f"http://127.0.0.1:{port}"
    webhook_portal.save()
    with pytest.raises(NotSent) as info:
        BitrixClient(webhook_portal).call("user.current", {})
    assert info.value.code == "CONNECTION_FAILED"
    assert "s3cr3t" not in repr(info.value) and info.value.__cause__ is None and info.value.__suppress_context__
    assert limiter.limiter_level(portal_id=webhook_portal.pk, rate=2.0) < 0.5


def test_read_timeout_is_outcome_unknown(stub, webhook_portal, settings):
    settings.BITRIX_READ_TIMEOUT = 0.3

    def slow(seen):
        time.sleep(1.0)
        return 200, OK, {}

    stub.respond = slow
    with pytest.raises(OutcomeUnknown) as info:
        BitrixClient(webhook_portal).call("crm.lead.add", {})
    assert info.value.code == "READ_TIMEOUT"


def test_batch_encoding_and_results(stub, webhook_portal):
    def respond(seen):
        return 200, {
            "result": {
                "result": {"lead": {"ID": "5", "TITLE": "x"}},
                "result_error": {"contact": {"error": "ACCESS_DENIED", "error_description": "no"}},
                "result_total": [], "result_next": [], "result_time": {"lead": {"operating": 1}},
            },
            "time": {},
        }, {}

    stub.respond = respond
    res = BitrixClient(webhook_portal).batch(
        [("lead", "crm.lead.get", {"id": 5}),
         ("contact", "crm.contact.add", {"fields": {"NAME": "A b", "LEAD_ID": "$result[lead][ID]"}})],
        halt=True,
    )
    seen = stub.requests[-1]
    assert seen.path == "/p/rest/1/s3cr3twebhookcode/batch"
    assert seen.json == {"halt": 1, "cmd": {
        "lead": "crm.lead.get?id=5",
        "contact": "crm.contact.add?fields[NAME]=A+b&fields[LEAD_ID]=$result[lead][ID]",
    }}
    assert res.results == {"lead": {"ID": "5", "TITLE": "x"}}
    assert res.errors == {"contact": {"error": "ACCESS_DENIED", "error_description": "no"}}
    assert res.totals == {} and res.times["lead"] == {"operating": 1}


def test_batch_limits(stub, webhook_portal):
    client = BitrixClient(webhook_portal)
    with pytest.raises(BatchTooLong):
        client.batch([(f"c{i}", "user.current", {}) for i in range(51)])
    with pytest.raises(PortalError):
        client.batch([("a", "batch", {})])
    with pytest.raises(PortalError):
        client.batch([("a", "user.current", {}), ("a", "user.current", {})])
    assert stub.requests == []


def test_run_steps_single_and_batch(stub, webhook_portal):
    client = BitrixClient(webhook_portal)
    stub.respond = lambda seen: (200, {"result": [1, 2], "total": 2, "time": {}}, {})
    out = client.run_steps([{"name": "only", "method": "crm.lead.list", "params": {}}])
    assert out == {"steps": {"only": {"result": [1, 2], "error": None, "total": 2, "next": None}}}
    stub.respond = lambda seen: (400, {"error": "ERROR_CORE", "error_description": "bad"}, {})
    out = client.run_steps([{"name": "only", "method": "crm.lead.add", "params": {}}])
    assert out["steps"]["only"]["error"] == {"error": "ERROR_CORE", "error_description": "bad"}

    stub.respond = lambda seen: (200, {"result": {
        "result": {"a": 7}, "result_error": {"b": {"error": "ACCESS_DENIED", "error_description": "x"}},
        "result_total": [], "result_next": [], "result_time": []}, "time": {}}, {})
    out = client.run_steps([{"name": "a", "method": "crm.lead.add", "params": {"fields": {"TITLE": "t"}}},
                            {"name": "b", "method": "crm.deal.add", "params": {"fields": {"LEAD_ID": "$result[a]"}}},
                            {"name": "c", "method": "crm.deal.get", "params": {"id": 1}}])
    assert stub.requests[-1].json["halt"] == 1
    assert out["steps"]["a"] == {"result": 7, "error": None, "total": None, "next": None}
    assert out["steps"]["b"]["error"]["error"] == "ACCESS_DENIED"
    assert out["steps"]["c"] == {"result": None, "error": None, "total": None, "next": None}


def test_run_steps_batch_refused_before_anything_ran_raises(stub, webhook_portal):
    stub.respond = lambda seen: (200, {"result": {
        "result": [], "result_error": {"a": {"error": "OPERATION_TIME_LIMIT", "error_description": ""}},
        "result_total": [], "result_next": [], "result_time": []}, "time": {}}, {})
    with pytest.raises(WaitForReset):
        BitrixClient(webhook_portal).run_steps([{"name": "a", "method": "crm.lead.add", "params": {}},
                                                {"name": "b", "method": "crm.deal.add", "params": {}}])
    assert MethodBlock.objects.filter(portal=webhook_portal, method="crm.lead.add").exists()


def test_limiter_sleeps_short_and_defers_long(stub, webhook_portal):
    webhook_portal.rate_per_second = 2.0
    webhook_portal.burst = 5
    webhook_portal.save()
    slept = []
    for _ in range(4):  # burst 5 minus the margin of 1
        assert limiter.limiter_acquire(portal_id=webhook_portal.pk, rate=2.0, burst=5, sleep=slept.append) == 0
    wait = limiter.limiter_acquire(portal_id=webhook_portal.pk, rate=2.0, burst=5, sleep=slept.append)
    assert 0.3 < wait <= 0.5 and slept == [wait]
    PortalLimiter.objects.filter(pk=webhook_portal.pk).update(level=20.0, updated_at=time.time())
    with pytest.raises(NotSent) as info:
        BitrixClient(webhook_portal).call("user.current", {})
    assert info.value.code == "LOCAL_RATE_LIMIT" and info.value.retry_after > 5
    assert stub.requests == []
    assert limiter.limiter_level(portal_id=webhook_portal.pk, rate=2.0) < 20.0  # not kept
