"""`manage.py add_portal`."""

import pytest
from django.core.management.base import CommandError

from apps.audit.models import AuditEntry
from apps.portals.models import Portal
from tests.integration.cli import run

pytestmark = pytest.mark.django_db


def test_add_portal_webhook_then_update():
    out = run("add_portal", "acme", "--url", "https://acme.bitrix24.com/", "--webhook-user", "7",
              "--webhook-code", "abc123", "--rps", "5", "--burst", "250")
    assert "Created" in out
    portal = Portal.objects.get(slug="acme")
    assert portal.base_url == "https://acme.bitrix24.com" and portal.rate_per_second == 5 and portal.burst == 250
    assert portal.credential.webhook_code == "abc123" and portal.credential.webhook_user_id == "7"
    assert "abc123" not in out
    assert "Updated" in run("add_portal", "acme", "--url", "https://acme.bitrix24.com", "--webhook-user", "7",
                            "--webhook-code", "new")
    portal.credential.refresh_from_db()
    assert portal.credential.webhook_code == "new"


def test_add_portal_oauth():
    run("add_portal", "oa", "--url", "https://oa.bitrix24.com", "--client-id", "local.1", "--client-secret", "s",
        "--access-token", "at", "--refresh-token", "rt", "--application-token", "apt")
    cred = Portal.objects.get(slug="oa").credential
    assert (cred.client_id, cred.client_secret, cred.access_token, cred.refresh_token, cred.application_token) == (
        "local.1", "s", "at", "rt", "apt")


@pytest.mark.parametrize("args, message", [
    (["--url", "http://acme.example.com", "--webhook-user", "1", "--webhook-code", "c"], "HTTPS"),
    (["--url", "https://acme.example.com"], "either"),
    (["--url", "https://acme.example.com", "--webhook-user", "1"], "both"),
    (["--url", "https://acme.example.com", "--webhook-user", "x", "--webhook-code", "c"], "numeric"),
    (["--url", "https://acme.example.com", "--client-id", "x"], "OAuth needs"),
    (["--url", "ftp://acme.example.com", "--webhook-user", "1", "--webhook-code", "c"], "https://"),
])
def test_add_portal_refuses_bad_input(args, message):
    with pytest.raises(CommandError, match=message):
        run("add_portal", "bad", *args)
    assert not Portal.objects.filter(slug="bad").exists()


def test_loopback_http_only_when_allowed(settings):
    settings.PORTAL_ALLOW_LOOPBACK_HTTP = False
    with pytest.raises(CommandError):
        run("add_portal", "local", "--url", "http://127.0.0.1:8000/sandbox/x", "--webhook-user", "1",
            "--webhook-code", "c")
    settings.PORTAL_ALLOW_LOOPBACK_HTTP = True
    run("add_portal", "local", "--url", "http://127.0.0.1:8000/sandbox/x", "--webhook-user", "1", "--webhook-code", "c")
    assert Portal.objects.filter(slug="local").exists()


@pytest.mark.parametrize("url, base", [
    ("https://x.bitrix24.com/rest/1/abc123/", "https://x.bitrix24.com"),
    ("https://x.bitrix24.com/rest/1/abc123", "https://x.bitrix24.com"),
    ("https://x.bitrix24.com/rest/1/abc123/profile.json", "https://x.bitrix24.com"),
])
def test_add_portal_splits_a_full_webhook_url(url, base):
    out = run("add_portal", "x", "--url", url)
    assert "Split the webhook URL" in out and "--webhook-user 1" in out and "abc123" not in out
    portal = Portal.objects.get(slug="x")
    assert portal.base_url == base and portal.auth_mode == "webhook"
    assert (portal.credential.webhook_user_id, portal.credential.webhook_code) == ("1", "abc123")
    assert "abc123" not in str(list(AuditEntry.objects.values_list("data", flat=True)))


def test_add_portal_splits_a_sandbox_webhook_url(settings):
    settings.PORTAL_ALLOW_LOOPBACK_HTTP = True
    run("add_portal", "local", "--url", "http://127.0.0.1:8000/sandbox/demo/rest/1/code_1/")
    portal = Portal.objects.get(slug="local")
    assert portal.base_url == "http://127.0.0.1:8000/sandbox/demo" and portal.credential.webhook_code == "code_1"


@pytest.mark.parametrize("slug, args, message", [
    ("x", ["--url", "https://x.bitrix24.com/rest/1/abc/", "--webhook-user", "2"], "differs"),
    ("x", ["--url", "https://x.bitrix24.com/rest/abc/"], "/rest/<user id>/<code>/"),
    ("x", ["--url", "https://x.bitrix24.com/rest/1/abc/?a=1"], "looks like"),
    ("not a slug!", ["--url", "https://x.bitrix24.com", "--webhook-user", "1", "--webhook-code", "c"], "slug"),
    ("x" * 65, ["--url", "https://x.bitrix24.com", "--webhook-user", "1", "--webhook-code", "c"], "slug"),
    ("x", ["--url", "not a url", "--webhook-user", "1", "--webhook-code", "c"], "https://"),
    ("x", ["--url", "https://x.bitrix24.com", "--webhook-user", "1", "--webhook-code", "c", "--name", "n" * 201],
     "name"),
    ("x", ["--url", "https://x.bitrix24.com", "--webhook-user", "1", "--webhook-code", "c", "--rps", "0"], "rate"),
])
def test_add_portal_bad_input_is_one_line(slug, args, message):
    with pytest.raises(CommandError, match=message) as caught:
        run("add_portal", slug, *args)
    assert "\n" not in str(caught.value)
    assert not Portal.objects.exists()


def test_add_portal_keeps_the_name_when_not_given():
    run("add_portal", "acme", "--url", "https://acme.bitrix24.com", "--name", "ACME", "--webhook-user", "7",
        "--webhook-code", "abc123")
    run("add_portal", "acme", "--url", "https://acme.bitrix24.com", "--webhook-user", "7", "--webhook-code", "c2")
    assert Portal.objects.get(slug="acme").name == "ACME"
