"""Addresses (FACTS §1) and the guarantee that secrets never reach a log record."""

import logging

import pytest

from apps.bitrix.address import build_url, method_path
from apps.bitrix.errors import NotSent, PortalError, PortalMoved
from apps.bitrix.http import USER_AGENT, http_send
from apps.bitrix.redact import RedactFilter, redact
from tests.integration.bitrix.stub import StubServer

SECRET = "hookcode123secret"


@pytest.mark.parametrize(
    "rest3,webhook,expected",
    [
        (False, ("7", SECRET), f"https://p.example/rest/7/{SECRET}/crm.lead.get"),
        (True, ("7", SECRET), f"https://p.example/rest/api/7/{SECRET}/crm.lead.get"),
        (False, None, "https://p.example/rest/crm.lead.get"),
        (True, None, "https://p.example/rest/api/crm.lead.get"),
    ],
)
def test_build_url(rest3, webhook, expected):
    assert build_url(base_url="https://p.example/", method="crm.lead.get", rest3=rest3, webhook=webhook) == expected


def test_sandbox_style_base_url_keeps_its_path():
    url = build_url(base_url="http://127.0.0.1:8000/sandbox/demo", method="user.current", rest3=False,
                    webhook=("1", "abc"))
    assert url == "http://127.0.0.1:8000/sandbox/demo/rest/1/abc/user.current"


def test_method_names():
    assert method_path(" crm.lead.get.json ") == "crm.lead.get"
    assert method_path("catalog.roundingRule.list") == "catalog.roundingRule.list"
    for bad in ("../x", "a/b", "a?b=1", "a b", "", "a..b", "é.get", None, "x" * 200):
        with pytest.raises(PortalError):
            method_path(bad)


def test_redact():
    assert redact(f"POST /rest/1/{SECRET}/crm.lead.add HTTP/1.1") == "POST /rest/1/***/crm.lead.add HTTP/1.1"
    assert redact(f"/rest/api/12/{SECRET}/tasks.task.add") == "/rest/api/12/***/tasks.task.add"
    assert redact("GET /oauth/token/?grant_type=refresh_token&client_id=a&client_secret=S&refresh_token=R") == (
        "GET /oauth/token/?grant_type=refresh_token&client_id=a&client_secret=***&refresh_token=***"
    )
    assert redact("/rest/user.current?auth=TOKEN") == "/rest/user.current?auth=***"
    assert redact("something with mysecretvalue in it", ("mysecretvalue",)) == "something with *** in it"


def test_filter_rewrites_records(caplog):
    logger = logging.getLogger("tests.redact")
    logger.addFilter(RedactFilter())
    try:
        with caplog.at_level(logging.DEBUG, logger="tests.redact"):
            logger.debug('%s "%s %s"', "http://h:1", "POST", f"/rest/1/{SECRET}/x")
    finally:
        logger.filters.clear()
    assert SECRET not in caplog.text and "/rest/1/***/x" in caplog.text


@pytest.fixture
def stub():
    server = StubServer().start()
    yield server
    server.stop()


def test_real_requests_never_log_the_webhook_code(stub, caplog, settings):
    settings.BITRIX_CONNECT_TIMEOUT, settings.BITRIX_READ_TIMEOUT = 2.0, 2.0
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="urllib3")
    url = build_url(base_url=stub.url, method="crm.lead.get", rest3=False, webhook=("1", SECRET))
    response = http_send("POST", url, json_body={"id": 1}, method="crm.lead.get", label="p", secrets=(SECRET,))
    assert response.status_code == 200
    seen = stub.requests[-1]
    assert seen.headers["User-Agent"] == USER_AGENT and seen.headers["Accept"] == "application/json"
    assert seen.headers["Content-Type"].startswith("application/json")
    stub.respond = lambda s: (302, {}, {"Location": f"https://new.example/rest/1/{SECRET}/crm.lead.get"})
    with pytest.raises(PortalMoved) as info:
        http_send("POST", url, json_body={}, method="crm.lead.get", label="p", secrets=(SECRET,))
    assert SECRET not in info.value.location
    stub.respond = lambda s: (200, {"access_token": "x"}, {})
    http_send("GET", f"{stub.url}/oauth/token/", params={"client_secret": "CS-VALUE", "refresh_token": "RT-VALUE"},
              method="oauth.token", label="p")
    records = [r.getMessage() for r in caplog.records]
    assert any("urllib3" in r.name for r in caplog.records)
    for text in records:
        assert SECRET not in text and "CS-VALUE" not in text and "RT-VALUE" not in text


def test_connection_refused_message_carries_no_url(caplog):
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    url = f"http://127.0.0.1:{port}/rest/1/{SECRET}/user.current"
    with pytest.raises(NotSent) as info:
        http_send("POST", url, json_body={}, method="user.current", label="p", secrets=(SECRET,))
    assert SECRET not in str(info.value) and info.value.__suppress_context__
    assert SECRET not in caplog.text


def test_runserver_request_lines_are_masked(caplog):
    logger = logging.getLogger("django.server")
    assert any(isinstance(f, RedactFilter) for f in logger.filters)
    with caplog.at_level(logging.INFO, logger="django.server"):
        logger.info('"%s" %s %s', f"POST /sandbox/x/rest/1/{SECRET}/server.time HTTP/1.1", "200", "12")
    assert SECRET not in caplog.text
