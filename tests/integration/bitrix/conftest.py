import pytest

from apps.portals.models import AuthMode, Credential, OAuthApp, Portal

from .stub import StubServer


@pytest.fixture
def stub():
    server = StubServer().start()
    yield server
    server.stop()


@pytest.fixture
def webhook_portal(db, stub):
    portal = Portal.objects.create(slug="stubhook", base_url=f"{stub.url}/p", auth_mode=AuthMode.WEBHOOK)
    Credential.objects.create(portal=portal, webhook_user_id="1", webhook_code="s3cr3twebhookcode")
    return portal


@pytest.fixture
def oauth_portal(db, stub):
    app = OAuthApp.objects.create(
        name="stub app", client_id="local.stub.1", client_secret="clientsecretvalue",
        token_url=f"{stub.url}/oauth/token/",
    )
    portal = Portal.objects.create(
        slug="stuboauth", base_url=f"{stub.url}/p", auth_mode=AuthMode.OAUTH, member_id="m1"
    )
    Credential.objects.create(
        portal=portal, oauth_app=app, access_token="accesstoken-old", refresh_token="refreshtoken-old",
    )
    return portal
