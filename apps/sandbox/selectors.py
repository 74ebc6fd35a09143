"""Reads over the sandbox state: counters the tests and the benchmark look at, and records."""

from .models import SandboxMethodCount, SandboxOAuthClient, SandboxPortal, SandboxRecord


def sandbox_counters(*, portal: SandboxPortal) -> dict:
    """{requests_total, query_limit_refusals, operation_limit_refusals, faults_injected,
    token_endpoint_calls, methods: {name: runs} (v2), methods_v3: {name: runs}}.
    A method "run" means its handler was invoked (batch sub-calls included)."""
    row = SandboxPortal.objects.get(pk=portal.pk)
    counts = SandboxMethodCount.objects.filter(portal=row)
    return {
        "requests_total": row.requests_total,
        "query_limit_refusals": row.query_limit_refusals,
        "operation_limit_refusals": row.operation_limit_refusals,
        "faults_injected": row.faults_injected,
        "token_endpoint_calls": row.token_endpoint_calls,
        "methods": {c.method: c.count for c in counts if c.api == "v2"},
        "methods_v3": {c.method: c.count for c in counts if c.api == "v3"},
    }


def sandbox_method_calls(*, portal: SandboxPortal, method: str, api: str = "v2") -> int:
    row = SandboxMethodCount.objects.filter(portal=portal, api=api, method=method.lower()).first()
    return row.count if row else 0


def sandbox_token_endpoint_calls(*, client_id: str) -> int:
    """Calls of the token endpoint naming this client (any outcome)."""
    row = SandboxOAuthClient.objects.filter(client_id=client_id).first()
    return row.token_calls if row else 0


def sandbox_records(*, portal: SandboxPortal, entity: str) -> list[dict]:
    """Stored records of one entity (lead, deal, contact, task), by ID."""
    return [r.data for r in SandboxRecord.objects.filter(portal=portal, entity=entity).order_by("record_id")]
