from tests.integration.clients.conftest import plane_agent, sandbox_portal  # noqa: F401 (fixtures)
