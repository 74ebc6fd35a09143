"""A plane on a live server with a sandbox portal, for the agent-side clients (b24cp, MCP)."""

import pytest

from apps.portals.services import portal_upsert
from apps.sandbox.services import sandbox_portal_ensure, sandbox_webhook_create


@pytest.fixture
def sandbox_portal(live_server):
    """The portal `demo`, a sandbox portal served by the live server itself."""
    sandbox = sandbox_portal_ensure(slug="demo")
    user_id, code = sandbox_webhook_create(portal=sandbox)
    portal, _ = portal_upsert(slug="demo", base_url=f"{live_server.url}/sandbox/demo", auth_mode="webhook",
                              secrets={"webhook_code": code}, fields={"webhook_user_id": str(user_id)})
    return portal


@pytest.fixture
def plane_agent(sandbox_portal, make_agent):
    """An agent holding `core` on `demo` with the default policy (read auto, write approve)."""
    return make_agent("mcp-agent", portal=sandbox_portal)
