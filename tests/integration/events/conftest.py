import json
from pathlib import Path

import pytest

from apps.events.services import event_settings_update
from apps.portals.models import AuthMode, Credential, OAuthApp, Portal

from .stub import ADMIN_TOKEN, OfflineQueueStub

SAMPLES = Path(__file__).resolve().parents[2] / "unit" / "bitrix" / "samples"
MEMBER_ID = "a223c6b3710f85df22e9377d6c4f7553"
APP_TOKEN = "51856fefc120afa4b628cc82d3935cce"


def sample(name):
    return json.loads((SAMPLES / f"{name}.json").read_text())


@pytest.fixture
def queue_stub():
    stub = OfflineQueueStub().start()
    yield stub
    stub.stop()


def make_oauth_portal(base_url, *, slug="qportal", member_id=MEMBER_ID, app_token=APP_TOKEN, access_token=ADMIN_TOKEN,
                      offline=True):
    app, _ = OAuthApp.objects.get_or_create(client_id="local.events.1", defaults={
        "name": "events app", "client_secret": "s3cret", "token_url": f"{base_url}/oauth/token/"})
    portal = Portal.objects.create(slug=slug, base_url=base_url, auth_mode=AuthMode.OAUTH, member_id=member_id)
    Credential.objects.create(portal=portal, oauth_app=app, access_token=access_token, refresh_token="r-" + slug,
                              application_token=app_token)
    if offline:
        event_settings_update(portal=portal, offline_events=True)
    return portal


@pytest.fixture
def offline_portal(db, queue_stub):
    return make_oauth_portal(queue_stub.base_url)
