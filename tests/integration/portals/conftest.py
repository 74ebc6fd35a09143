import pytest

from tests.integration.bitrix.stub import StubServer


@pytest.fixture
def stub():
    """A local HTTP server playing the portal (app.info) and the OAuth token endpoint."""
    server = StubServer().start()
    yield server
    server.stop()
