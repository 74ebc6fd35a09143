"""The sandbox over real HTTP (live_server + requests), as the Bitrix24 client will reach it."""

import time

import pytest
import requests

from apps.sandbox.params import php_build_query
from apps.sandbox.selectors import sandbox_records
from apps.sandbox.services import (
    sandbox_oauth_client_create,
    sandbox_oauth_code_issue,
    sandbox_portal_ensure,
    sandbox_set_faults,
    sandbox_set_limits,
    sandbox_webhook_create,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def http_portal(live_server):
    portal = sandbox_portal_ensure(slug="live")
    sandbox_set_limits(portal=portal, burst=1000)
    user_id, code = sandbox_webhook_create(portal=portal, code="livecode")
    base = f"{live_server.url}/sandbox/live"
    return portal, f"{base}/rest/{user_id}/{code}", base


def test_webhook_calls_over_http(http_portal):
    portal, hook, _ = http_portal
    session = requests.Session()
    added = session.post(f"{hook}/crm.lead.add.json", json={"fields": {"TITLE": "over http"}}, timeout=5)
    assert added.status_code == 200
    assert added.headers["Content-Type"].startswith("application/json")
    assert added.json()["result"] == 1
    form = session.post(f"{hook}/crm.lead.add", data=php_build_query({"fields": {"TITLE": "form"}}),
                        headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=5)
    assert form.json()["result"] == 2
    listed = session.get(f"{hook}/crm.lead.list", params={"select[0]": "TITLE"}, timeout=5).json()
    assert [r["TITLE"] for r in listed["result"]] == ["over http", "form"] and listed["total"] == 2
    batch = session.post(f"{hook}/batch", json={"cmd": {"x": "crm.lead.get?id=$result[y]", "y": "server.time"}},
                         timeout=5).json()
    assert batch["result"]["result_error"]["x"]["error_description"] == "ID is not defined or invalid."
    assert session.post(f"{hook}/nope.method", json={}, timeout=5).status_code == 404


def test_oauth_round_trip_over_http(http_portal):
    portal, _, base = http_portal
    client_id, secret = sandbox_oauth_client_create()
    code = sandbox_oauth_code_issue(portal=portal, client_id=client_id)
    token_url = base.rsplit("/live", 1)[0] + "/oauth/token/"
    pair = requests.get(token_url, params={"grant_type": "authorization_code", "client_id": client_id,
                                           "client_secret": secret, "code": code}, timeout=5).json()
    assert pair["client_endpoint"] == f"{base}/rest/"
    answer = requests.post(pair["client_endpoint"] + "user.current", json={"auth": pair["access_token"]}, timeout=5)
    assert answer.status_code == 200 and answer.json()["result"]["ID"] == "1"
    v3 = requests.post(f"{base}/rest/api/tasks.task.add", timeout=5, json={
        "auth": pair["access_token"], "fields": {"title": "t", "creatorId": 1, "responsibleId": 1}})
    assert v3.json()["result"]["item"]["id"] == 1


def test_timeout_after_write_fires_the_client_read_timeout(http_portal):
    """'The write happened but the answer was lost': the client times out, the lead exists."""
    portal, hook, _ = http_portal
    sandbox_set_faults(portal=portal, timeout_seconds=1.5, when="after")
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(f"{hook}/crm.lead.add", json={"fields": {"TITLE": "ghost"}}, timeout=(2, 0.4))
    assert time.monotonic() - started < 1.5
    assert [r["TITLE"] for r in sandbox_records(portal=portal, entity="lead")] == ["ghost"]
    time.sleep(1.3)  # let the server thread finish its sleep before the database is flushed
    assert requests.post(f"{hook}/crm.lead.list", json={}, timeout=5).json()["total"] == 1


def _in_memory_sqlite() -> bool:
    from django.db import connection

    return connection.vendor == "sqlite" and connection.is_in_memory_db()


def test_bucket_is_exact_under_concurrent_requests(http_portal):
    """Runs where the test database takes real row locks (PostgreSQL: DATABASE_URL in the services
    suite). In-memory shared-cache SQLite answers concurrent writers with 'table is locked'
    instead of waiting, which says nothing about the sandbox."""
    from concurrent.futures import ThreadPoolExecutor

    if _in_memory_sqlite():
        pytest.skip("needs a database with blocking row locks (PostgreSQL or file SQLite)")

    portal, hook, _ = http_portal
    sandbox_set_limits(portal=portal, rate=0.0, burst=10)  # no drain: exactly 10 may pass

    def call(_):
        return requests.get(f"{hook}/server.time", timeout=10).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(call, range(24)))
    assert sorted(statuses) == [200] * 10 + [503] * 14
