"""Scopes as documented (FACTS §1, §12): v2 tasks.task.* need `task`, REST 3.0 ones `tasks`;
`scope` answers the caller's own scopes without `basic`."""

import pytest

from apps.sandbox.services import sandbox_oauth_client_create, sandbox_oauth_issue, sandbox_webhook_create

pytestmark = pytest.mark.django_db


def test_scope_is_the_webhooks_own(rest):
    _, code = sandbox_webhook_create(portal=rest.portal, scopes=["crm", "task", "basic"])
    answer = rest.client.get(f"/sandbox/acme/rest/1/{code}/scope")
    assert answer.status_code == 200
    assert answer.json()["result"] == ["crm", "task"]
    full = rest.client.get(f"/sandbox/acme/rest/1/{code}/scope?full=true").json()["result"]
    assert {"crm", "task", "tasks", "user"} <= set(full) and "basic" not in full


def test_scope_is_the_apps_own(client, rest):
    client_id, _ = sandbox_oauth_client_create(scopes=["user"])
    token = sandbox_oauth_issue(portal=rest.portal, client_id=client_id)["access_token"]
    assert client.get(f"/sandbox/acme/rest/scope?auth={token}").json()["result"] == ["user"]


@pytest.mark.parametrize("scopes,v2,v3", [(["task"], 200, 403), (["tasks"], 403, 200), (["crm"], 403, 403),
                                          (["task", "tasks"], 200, 200)])
def test_task_scopes_by_api_version(rest, scopes, v2, v3):
    _, code = sandbox_webhook_create(portal=rest.portal, scopes=scopes)
    assert rest.client.get(f"/sandbox/acme/rest/1/{code}/tasks.task.list").status_code == v2
    answer = rest.client.post(f"/sandbox/acme/rest/api/1/{code}/tasks.task.list", data="{}",
                              content_type="application/json")
    assert answer.status_code == v3
