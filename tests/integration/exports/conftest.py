import pytest

from apps.sandbox.models import SandboxPortal


@pytest.fixture
def export_portal(make_sandbox_portal, settings, tmp_path):
    """A sandbox portal served over real HTTP, with a fresh exports directory."""
    settings.EXPORTS_DIR = str(tmp_path / "exports")
    portal = make_sandbox_portal("exp")
    portal.sandbox = SandboxPortal.objects.get(slug="exp")
    return portal


@pytest.fixture
def run_exports(celery_drain):
    """Drain the broker until nothing is left (plans and export runs), ignoring countdowns."""

    def run(rounds=200):
        ran = []
        for _ in range(rounds):
            batch = celery_drain()
            if not batch:
                break
            ran.extend(batch)
        return ran

    return run
