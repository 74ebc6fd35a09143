"""Every secret name the redaction knows is masked in text and in log records (issue 12: removing
`application_token` from the masks passed every test before these)."""

import logging

import pytest

from apps.bitrix.redact import MASK, RedactFilter, redact

NAMES = ["auth", "access_token", "refresh_token", "client_secret", "code", "application_token", "AUTH_ID",
         "REFRESH_ID"]


@pytest.mark.parametrize("name", NAMES)
def test_each_secret_parameter_is_masked(name):
    text = f"POST /rest/event.bind?member_id=m1&{name}=s3cr3tvalue42&x=1 HTTP/1.1"
    out = redact(text)
    assert "s3cr3tvalue42" not in out
    assert f"{name}={MASK}" in out and "member_id=m1" in out and "x=1" in out


@pytest.mark.parametrize("name", NAMES)
def test_each_secret_parameter_is_masked_in_a_log_record(name):
    record = logging.LogRecord("urllib3.connectionpool", logging.DEBUG, __file__, 1,
                               '%s "%s" %s', ("http://portal:80", f"GET /x?{name}=s3cr3tvalue42", 200), None)
    assert RedactFilter().filter(record) is True
    assert "s3cr3tvalue42" not in record.getMessage()
    assert f"{name}={MASK}" in record.getMessage()


def test_webhook_code_in_a_path_and_given_secrets_are_masked():
    out = redact("https://p.example/rest/1/abcdefcode123/crm.lead.add and app-token-xyz", secrets=("app-token-xyz",))
    assert "abcdefcode123" not in out and "app-token-xyz" not in out
    assert out == f"https://p.example/rest/1/{MASK}/crm.lead.add and {MASK}"


def test_given_secrets_from_four_characters_are_masked_shorter_ones_are_not():
    # Shorter values would mask ordinary words; a real secret is far longer than four characters.
    assert redact("key abcd in text", secrets=("abcd",)) == "key *** in text"
    assert redact("key abc in text", secrets=("abc", "")) == "key abc in text"
    assert MASK == "***"


def test_a_record_whose_arguments_do_not_fit_is_still_masked():
    # getMessage() raises (two placeholders, one argument): the raw message is masked instead.
    record = logging.LogRecord("urllib3.connectionpool", logging.DEBUG, __file__, 1,
                               "GET /x?access_token=s3cr3tvalue42 %s %s", ("one",), None)
    assert RedactFilter().filter(record) is True
    assert "s3cr3tvalue42" not in record.msg and record.args == ()
    assert record.msg == f"GET /x?access_token={MASK} %s %s"


def test_every_logger_that_prints_request_lines_carries_the_filter():
    # Installed when Django starts (apps.bitrix.apps): urllib3's and requests' request lines, and
    # the runserver/request loggers of the process that serves the sandbox portal.
    for name in ("urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry", "requests", "django.server",
                 "django.request"):
        assert sum(isinstance(f, RedactFilter) for f in logging.getLogger(name).filters) == 1, name
