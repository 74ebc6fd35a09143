"""/mcp's transport guards: a browser Origin outside ALLOWED_HOSTS (the spec's DNS-rebinding guard),
the agent's rate limit and the body size limit, each a JSON-RPC error carrying the API's code."""

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


def test_rate_limit_and_body_size(client, agent, settings):
    from django.core.cache import cache

    cache.clear()
    settings.API_RATE_PER_MINUTE = 2
    auth = {"HTTP_AUTHORIZATION": f"Bearer {agent.token}"}
    body = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    answers = [client.post("/mcp", body, content_type="application/json", **auth) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2]["Retry-After"] and answers[2].json()["error"]["data"]["code"] == "rate_limited"
    cache.clear()
    settings.API_RATE_PER_MINUTE = 0
    settings.API_MAX_BODY_BYTES = 100
    big = {"jsonrpc": "2.0", "id": 2, "method": "ping", "params": {"pad": "x" * 200}}
    too_large = client.post("/mcp", big, content_type="application/json", **auth)
    assert too_large.status_code == 413 and too_large.json()["error"]["data"]["code"] == "too_large"
    wrong_type = client.post("/mcp", "ping", content_type="text/plain", **auth)
    assert wrong_type.status_code == 415 and wrong_type.json()["error"]["data"]["code"] == "unsupported_media_type"
