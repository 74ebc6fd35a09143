"""The OAuth install callback and the authorization-code callback (/bitrix24/...), with the
portal's app.info and the token endpoint played by the local stub server."""

import json
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from apps.audit.models import AuditEntry
from apps.portals.models import AuthMode, Credential, OAuthApp, Portal
from apps.portals.oauth import oauth_authorize_url

pytestmark = pytest.mark.django_db(transaction=True)

SAMPLE = json.loads((Path(__file__).parents[2] / "unit/bitrix/samples/event_onappinstall.json").read_text())


@pytest.fixture
def app(stub):
    return OAuthApp.objects.create(name="app", client_id="local.app.1", client_secret="appsecret",
                                   token_url=f"{stub.url}/oauth/token/")


def install_form(stub, **overrides):
    """The documented ONAPPINSTALL form, re-pointed at the stub portal."""
    fields = dict(SAMPLE["form_fields"])
    host = urlsplit(stub.url).netloc
    fields["auth[domain]"] = host
    fields["auth[client_endpoint]"] = f"{stub.url}/portal/rest/"
    fields.update(overrides)
    return urlencode({k: v for k, v in fields.items() if v is not None})


def app_info_ok(stub, token="s6p6eclrvim6da22ft9ch94ekreb52lv"):
    def respond(seen):
        if seen.path == "/portal/rest/app.info" and seen.json == {"auth": token}:
            return 200, {"result": {"ID": 1, "CODE": "local.app.1", "STATUS": "L", "INSTALLED": True}}, {}
        return 401, {"error": "NO_AUTH_FOUND", "error_description": "Wrong authorization data"}, {}
    return respond


def post(client, body, query=""):
    return client.post(f"/bitrix24/install/{query}", data=body, content_type="application/x-www-form-urlencoded")


def test_install_verifies_then_stores_by_member_id(client, stub, app):
    stub.respond = app_info_ok(stub)
    resp = post(client, install_form(stub))
    assert resp.status_code == 200, resp.content
    body = resp.json()
    assert body["installed"] is True and body["member_id"] == "a223c6b3710f85df22e9377d6c4f7553"
    portal = Portal.objects.get(member_id="a223c6b3710f85df22e9377d6c4f7553")
    assert portal.auth_mode == AuthMode.OAUTH and portal.base_url == f"{stub.url}/portal"
    assert portal.slug == body["portal"] and portal.slug.startswith("127-0-0-1-")
    cred = portal.credential
    assert cred.access_token == "s6p6eclrvim6da22ft9ch94ekreb52lv"
    assert cred.refresh_token == "4s386p3q0tr8dy89xvmt96234v3dljg8"
    assert cred.application_token == "51856fefc120afa4b628cc82d3935cce"
    assert cred.oauth_app == app and cred.scope == "imbot" and cred.access_expires_at is not None
    assert [s.path for s in stub.requests] == ["/portal/rest/app.info"]
    # ciphertext at rest
    from django.db import connection
    with connection.cursor() as cur:
        cur.execute("select access_token from portals_credential where id=%s", [cred.pk])
        assert "s6p6ecl" not in cur.fetchone()[0]
    entry = AuditEntry.objects.filter(action="portal.changed").last()
    assert "s6p6ecl" not in json.dumps(entry.data)

    # A reinstall updates the same portal (new tokens, same member_id).
    stub.respond = app_info_ok(stub, token="newaccesstoken")
    resp = post(client, install_form(stub, **{"auth[access_token]": "newaccesstoken",
                                              "auth[application_token]": "newapptoken"}))
    assert resp.status_code == 200
    assert Portal.objects.count() == 1
    assert Credential.objects.get().access_token == "newaccesstoken"


def test_install_with_a_token_the_portal_rejects_is_400_and_stores_nothing(client, stub, app):
    stub.respond = lambda seen: (401, {"error": "NO_AUTH_FOUND"}, {})
    resp = post(client, install_form(stub))
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "install_not_verified"
    assert not Portal.objects.exists()


@pytest.mark.parametrize(
    "overrides,field",
    [
        ({"auth[access_token]": None}, "auth[access_token]"),
        ({"auth[member_id]": "bad id!"}, "auth[member_id]"),
        ({"auth[domain]": "evil.example/../x"}, "auth[domain]"),
        ({"auth[client_endpoint]": "http://evil.example/rest/"}, "auth[client_endpoint]"),
        ({"auth[client_endpoint]": "ftp://x/rest/"}, "auth[client_endpoint]"),
        ({"auth[application_token]": ""}, "auth[application_token]"),
    ],
)
def test_bad_install_input_is_a_clear_400(client, stub, app, overrides, field):
    stub.respond = app_info_ok(stub)
    resp = post(client, install_form(stub, **overrides))
    assert resp.status_code == 400, resp.content
    assert resp.json()["error"]["field"] == field
    assert not Portal.objects.exists()
    assert stub.requests == []


def test_install_garbage_and_wrong_method(client, stub, app):
    assert post(client, "not a form at all").status_code == 400
    assert client.get("/bitrix24/install/").status_code == 405
    assert client.post("/bitrix24/install/", data=b"\xff\xfe", content_type="application/json").status_code == 400


def test_install_needs_a_known_app(client, stub, app):
    OAuthApp.objects.create(name="other", client_id="local.other.2", client_secret="x")
    stub.respond = app_info_ok(stub)
    resp = post(client, install_form(stub))
    assert resp.status_code == 400 and resp.json()["error"]["field"] == "app"
    assert post(client, install_form(stub), "?app=nope").status_code == 400
    assert post(client, install_form(stub), "?app=local.app.1").status_code == 200


def test_member_id_of_another_address_is_refused(client, stub, app):
    Portal.objects.create(slug="known", base_url="https://known.bitrix24.com",
                          member_id="a223c6b3710f85df22e9377d6c4f7553", auth_mode=AuthMode.OAUTH)
    stub.respond = app_info_ok(stub)
    resp = post(client, install_form(stub))
    assert resp.status_code == 400 and resp.json()["error"]["field"] == "member_id"
    assert Portal.objects.get().base_url == "https://known.bitrix24.com"


def test_authorization_code_callback(client, stub, app):
    host = urlsplit(stub.url).netloc

    def respond(seen):
        if seen.path == "/oauth/token/":
            q = {k: v[0] for k, v in seen.query.items()}
            assert q == {"grant_type": "authorization_code", "client_id": "local.app.1",
                         "client_secret": "appsecret", "code": "thecode"}
            return 200, {"access_token": "codeaccess", "refresh_token": "coderefresh", "expires_in": 3600,
                         "member_id": "m-42", "client_endpoint": f"{stub.url}/portal/rest/",
                         "domain": "oauth.bitrix.info", "scope": "crm,user"}, {}
        return app_info_ok(stub, token="codeaccess")(seen)

    stub.respond = respond
    url = oauth_authorize_url(portal_base_url=f"{stub.url}/portal", app=app)
    state = parse_qs(urlsplit(url).query)["state"][0]
    assert url.startswith(f"{stub.url}/portal/oauth/authorize/?client_id=local.app.1")
    query = {"code": "thecode", "state": state, "domain": host, "member_id": "m-42", "scope": "crm,user",
             "server_domain": "oauth.bitrix.info"}
    resp = client.get("/bitrix24/oauth/callback/", query)
    assert resp.status_code == 200, resp.content
    portal = Portal.objects.get(member_id="m-42")
    assert portal.credential.access_token == "codeaccess" and portal.credential.refresh_token == "coderefresh"
    assert portal.credential.scope == "crm,user"

    # a forged state, or a member_id the token endpoint did not answer for: 400
    assert client.get("/bitrix24/oauth/callback/", {**query, "state": "forged"}).status_code == 400
    resp = client.get("/bitrix24/oauth/callback/", {**query, "member_id": "someone-else"})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "install_not_verified"
    resp = client.get("/bitrix24/oauth/callback/", {"state": state})
    assert resp.status_code == 400 and resp.json()["error"]["field"] == "code"


def test_oauth_start_is_staff_only(client, admin_user, stub, app):
    portal = Portal.objects.create(slug="p1", base_url="https://p1.bitrix24.com")
    resp = client.get("/bitrix24/oauth/start/", {"portal": portal.slug})
    assert resp.status_code == 302 and "/oauth/authorize/" not in resp["Location"]
    client.force_login(admin_user)
    resp = client.get("/bitrix24/oauth/start/", {"portal": portal.slug})
    assert resp.status_code == 302 and resp["Location"].startswith("https://p1.bitrix24.com/oauth/authorize/?")
    assert client.get("/bitrix24/oauth/start/").status_code == 400


def test_a_reinstall_restores_a_revoked_credential(client, stub, app):
    from apps.portals.services import credential_set_status

    stub.respond = app_info_ok(stub)
    assert post(client, install_form(stub)).status_code == 200
    portal = Portal.objects.get(member_id="a223c6b3710f85df22e9377d6c4f7553")
    credential_set_status(portal=portal, status="revoked", detail="ONAPPUNINSTALL")
    stub.respond = app_info_ok(stub, token="reinstalledtoken")
    assert post(client, install_form(stub, **{"auth[access_token]": "reinstalledtoken"})).status_code == 200
    credential = Credential.objects.get(portal=portal)
    assert (credential.status, credential.access_token) == ("ok", "reinstalledtoken")
    assert AuditEntry.objects.filter(action="credential.restored", portal=portal.slug).count() == 1
