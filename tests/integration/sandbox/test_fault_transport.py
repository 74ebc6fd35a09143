"""The transport (apps.bitrix BitrixClient) against each switched-on portal error, over real HTTP:
every documented system error reaches the caller as the class the transport documents for it,
and nothing was written."""

import pytest

from apps.bitrix.client import BitrixClient
from apps.bitrix.errors import BitrixError, OutcomeUnknown, OverloadBlocked, PortalError, PortalMoved
from apps.portals.models import Credential, Portal
from apps.sandbox.selectors import sandbox_records
from apps.sandbox.services import sandbox_portal_ensure, sandbox_set_fault, sandbox_webhook_create

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sb(live_server):
    return sandbox_portal_ensure(slug="faulty", rate=50.0, burst=500)


@pytest.fixture
def portal(live_server, sb):
    user_id, code = sandbox_webhook_create(portal=sb, code="faultcode")
    portal = Portal.objects.create(slug="faulty", base_url=f"{live_server.url}/sandbox/faulty", rate_per_second=50.0,
                                   burst=500)
    Credential.objects.create(portal=portal, webhook_user_id=user_id, webhook_code=code)
    return portal


@pytest.mark.parametrize("key,cls", [
    ("INVALID_CREDENTIALS", PortalError),
    ("ACCESS_DENIED", PortalError),
    ("OVERLOAD_LIMIT", OverloadBlocked),
    ("PORTAL_DELETED", PortalError),
    ("user_access_error", PortalError),
    ("METHOD_CONFIRM_WAITING", PortalError),
    ("METHOD_CONFIRM_DENIED", PortalError),
    ("ERROR_UNEXPECTED_ANSWER", OutcomeUnknown),
])
def test_v2_errors_through_the_transport(portal, sb, key, cls):
    sandbox_set_fault(portal=sb, error=key)
    with pytest.raises(BitrixError) as caught:
        BitrixClient(portal).call("crm.lead.add", {"fields": {"TITLE": "must not be written"}})
    assert type(caught.value) is cls and caught.value.code == key
    assert sandbox_records(portal=sb, entity="lead") == []


def test_rest3_access_denied_through_the_transport(portal, sb):
    sandbox_set_fault(portal=sb, error="ACCESSDENIEDEXCEPTION")
    with pytest.raises(PortalError) as caught:
        BitrixClient(portal).call("tasks.task.add", {"fields": {"title": "t", "creatorId": 1, "responsibleId": 1}},
                                  rest3=True)
    assert caught.value.code == "BITRIX_REST_V3_EXCEPTION_ACCESSDENIEDEXCEPTION"
    assert caught.value.http_status == 403
    assert sandbox_records(portal=sb, entity="task") == []


def test_moved_through_the_transport(portal, sb, live_server):
    sandbox_set_fault(portal=sb, error="MOVED", moved_to=f"{live_server.url}/sandbox/elsewhere")
    with pytest.raises(PortalMoved) as caught:
        BitrixClient(portal).call("crm.lead.add", {"fields": {"TITLE": "must not be written"}})
    assert "/sandbox/elsewhere/rest/" in caught.value.location
    assert "faultcode" not in caught.value.location  # the transport masks the webhook code
    assert sandbox_records(portal=sb, entity="lead") == []


def test_https_required_through_the_transport(portal, sb):
    sandbox_set_fault(portal=sb, error="", require_https=True)
    with pytest.raises(PortalError) as caught:
        BitrixClient(portal).call("crm.lead.add", {"fields": {"TITLE": "must not be written"}})
    assert caught.value.code == "INVALID_REQUEST" and caught.value.http_status == 400
    assert sandbox_records(portal=sb, entity="lead") == []
