"""/mcp refuses a browser Origin that is not one of ALLOWED_HOSTS (the spec's DNS-rebinding guard)."""

import pytest

pytestmark = pytest.mark.django_db


def test_a_browser_origin_must_be_an_allowed_host(client, agent, settings):
    settings.ALLOWED_HOSTS = ["testserver", "plane.example.com"]
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    auth = {"HTTP_AUTHORIZATION": f"Bearer {agent.token}"}
    evil = client.post("/mcp", body, content_type="application/json", HTTP_ORIGIN="http://evil.example", **auth)
    assert evil.status_code == 403 and evil.json()["error"]["data"]["code"] == "permission_denied"
    ok = client.post("/mcp", body, content_type="application/json", HTTP_ORIGIN="https://plane.example.com", **auth)
    assert ok.status_code == 200 and ok.json()["result"] == {}
    assert client.post("/mcp", body, content_type="application/json", **auth).status_code == 200  # no Origin
