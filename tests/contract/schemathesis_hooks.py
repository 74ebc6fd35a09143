"""Schemathesis hooks for tests/contract/run_schemathesis.py (SCHEMATHESIS_HOOKS).

Two rules of the agent API cannot be written in JSON Schema; the OpenAPI document states them in
words, and the server refuses a request that breaks them with a 400 naming the field:
- the `name`s of a plan's steps are unique;
- an `Idempotency-Key` header and a body `idempotency_key` sent together are equal.
A generated *positive* case that breaks one of them is not a valid request, so it is dropped
(`filter_case`); negative cases and everything else are left as generated.
"""

import schemathesis


def _repeats_step_names(body) -> bool:
    if not isinstance(body, dict) or not isinstance(body.get("steps"), list):
        return False
    names = [step.get("name") for step in body["steps"] if isinstance(step, dict)]
    return len({repr(name) for name in names}) != len(names)


def _two_different_keys(case) -> bool:
    header = next((v for k, v in (case.headers or {}).items() if k.lower() == "idempotency-key"), None)
    body_key = case.body.get("idempotency_key") if isinstance(case.body, dict) else None
    return header is not None and body_key is not None and header != body_key


@schemathesis.hook
def filter_case(context, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return True
    return not (_repeats_step_names(case.body) or _two_different_keys(case))


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """Two answers depend on the world, not on the data, so they are not "schema-valid request
    rejected": reusing an Idempotency-Key with another body (422 `idempotency_mismatch`, by
    contract, DESIGN.md), and a callback_url whose host does not resolve to public addresses
    only (400 naming `callback_url`: the plane calls no private network, which DNS decides).
    Every other failure counts."""
    if response.status_code not in (400, 422):
        return True
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return True
    if response.status_code == 422:
        return error.get("code") != "idempotency_mismatch"
    return error.get("field") != "callback_url"
