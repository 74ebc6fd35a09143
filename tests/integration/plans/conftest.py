import pytest


@pytest.fixture
def queued_executions(monkeypatch):
    """What would reach the broker for `execute_plan`: one (args, kwargs, countdown) per message.
    Patched at `apply_async`, below `enqueue_execution` and Django's on-commit hook, so a test sees
    a message only once the transaction's callbacks have run."""
    from apps.plans.tasks import execute_plan

    sent = []

    def apply_async(args=None, kwargs=None, **options):
        sent.append((tuple(args or ()), dict(kwargs or {}), options.get("countdown")))

    monkeypatch.setattr(execute_plan, "apply_async", apply_async)
    return sent
