"""A corpus of hostile requests (bodies, headers, query strings, paths, HTTP methods) that the agent
API must refuse the same way on SQLite and on PostgreSQL (`make services-test` runs this module
with DATABASE_URL pointing to PostgreSQL):

- a 4xx, never a 5xx and never a hang;
- `Content-Type: application/json` and `{"error": {"code", "message", ...}}`, with a code the
  OpenAPI document lists (so it comes from the exception hierarchy);
- no plan, idempotency record or audit entry written.

Where the refusal is one the issue names (duplicate keys, non-finite numbers, surrogates, NUL,
depth, crafted cursors, batch control keys, two Idempotency-Key headers), the case also pins the
status and the offending `field`.
"""

import json
from dataclasses import dataclass, field

import pytest

from apps.audit.models import AuditEntry
from apps.plans.models import IdempotencyRecord, Plan
from apps.plans.openapi import served_error_codes

pytestmark = pytest.mark.django_db

PLANS = "/api/v1/plans"
PLAN_ID = "0b7c5e2a-3f6d-4c1e-9a8b-2d4f6e8a0c1e"
AUTH = object()  # placeholder: the fixture agent's bearer token


@dataclass
class Case:
    id: str
    method: str = "POST"
    path: str = PLANS
    body: bytes | str | None = None
    content_type: str = "application/json"
    headers: dict = field(default_factory=dict)
    status: int | None = None  # pinned status, when the case is about one
    field: str | None = None  # pinned `field` of the error, when the case is about one
    field_prefix: str | None = None  # or how the pinned `field` starts (a path to a deep value)
    allow: str | None = None  # pinned Allow header (405)


def raw(text: str) -> bytes:
    """JSON text as sent: escapes like \\ud800 stay escapes, so the server decodes them."""
    return text.encode("utf-8")


def call(method="crm.lead.list", params="{}", portal='"acme"', extra=""):
    return f'{{"portal": {portal}, "method": "{method}", "params": {params}{extra}}}'


CASES: list[Case] = []


def add(*cases: Case) -> None:
    CASES.extend(cases)


def short(path: str) -> str:
    return path if len(path) <= 80 else path[:60] + f"...({len(path)})"


# --- duplicate keys, at any depth -----------------------------------------------------------
add(
    Case("dup-method", body=raw('{"portal": "acme", "method": "user.current", "method": "crm.lead.delete"}'),
         status=400, field="method"),
    Case("dup-portal", body=raw('{"portal": "acme", "portal": "other", "method": "user.current"}'),
         status=400, field="portal"),
    Case("dup-same-value", body=raw('{"portal": "acme", "portal": "acme", "method": "user.current"}'),
         status=400, field="portal"),
    Case("dup-escaped-spelling", body=raw('{"portal": "acme", "method": "user.current", "\\u006dethod": "x"}'),
         status=400, field="method"),
    Case("dup-in-params", body=raw(call(params='{"id": 1, "id": 2}')), status=400, field="params.id"),
    Case("dup-deep", body=raw(call(params='{"filter": {"a": {"b": {"c": 1, "c": 2}}}}')),
         status=400, field="params.filter.a.b.c"),
    Case("dup-in-list", body=raw(call(params='{"select": [{"x": 1, "x": 2}]}')), status=400,
         field="params.select.0.x"),
    Case("dup-step-key",
         body=raw('{"portal": "acme", "steps": [{"name": "a", "name": "b", "method": "user.current"}]}'),
         status=400, field="steps.0.name"),
    Case("dup-batch-cmd", body=raw(call("batch", '{"cmd": {"a": "user.current", "a": "crm.lead.delete?id=1"}}')),
         status=400, field="params.cmd.a"),
    Case("dup-steps", body=raw('{"portal": "acme", "steps": [], "steps": [{"name": "a", "method": "user.current"}]}'),
         status=400, field="steps"),
)

# --- nesting deeper than 64 levels (arrays and objects, in params and at the top) -----------------
for depth in (65, 100, 1000, 5000, 50000):
    too_deep_for_the_parser = depth >= 1000  # refused while decoding: the field is the body
    add(Case(f"deep-array-params-{depth}", body=raw(call(params='{"x": ' + "[" * depth + "]" * depth + "}")),
             status=400, field_prefix="body" if too_deep_for_the_parser else "params.x.0.0.0"))
    add(Case(f"deep-array-body-{depth}", body=raw("[" * depth + "]" * depth), status=400,
             field_prefix="body" if too_deep_for_the_parser else "0.0.0"))
for depth in (65, 100, 1000, 5000, 20000):
    too_deep_for_the_parser = depth >= 1000
    nested = '{"a": ' * depth + "1" + "}" * depth
    add(Case(f"deep-object-params-{depth}", body=raw(call(params='{"x": ' + nested + "}")), status=400,
             field_prefix="body" if too_deep_for_the_parser else "params.x.a.a.a"))
    add(Case(f"deep-object-body-{depth}", body=raw('{"a": ' * depth + "1" + "}" * depth), status=400,
             field_prefix="body" if too_deep_for_the_parser else "a.a.a"))

# --- numbers that are not finite (infinity breaks the canonical hash) ---------------------------
NON_FINITE = ["1e400", "-1e400", "1E+999", "1e309", "NaN", "Infinity", "-Infinity"]
for number in NON_FINITE:
    add(
        Case(f"nonfinite-param-{number}", body=raw(call(params=f'{{"id": {number}}}')), status=400, field="params.id"),
        Case(f"nonfinite-nested-{number}", body=raw(call(params=f'{{"filter": {{">ID": [{number}]}}}}')),
             status=400, field="params.filter.>ID.0"),
        Case(f"nonfinite-portal-{number}", body=raw(f'{{"portal": {number}, "method": "user.current"}}'),
             status=400, field="portal"),
        Case(f"nonfinite-step-{number}",
             body=raw(f'{{"portal": "acme", "steps": [{{"name": "a", "method": "x.y", '
                      f'"params": {{"n": {number}}}}}]}}'),
             status=400, field="steps.0.params.n"),
    )
add(
    Case("int-5000-digits", body=raw(call(params='{"id": ' + "9" * 5000 + "}")), status=400, field="body"),
    Case("int-negative-5000-digits", body=raw(call(params='{"id": -' + "9" * 5000 + "}")), status=400, field="body"),
)

# --- lone UTF-16 surrogates and NUL, in every string position ----------------------------------
POSITIONS = {
    "portal": lambda s: f'{{"portal": "{s}", "method": "user.current"}}',
    "method": lambda s: f'{{"portal": "acme", "method": "{s}"}}',
    "reason": lambda s: call(extra=f', "reason": "{s}"'),
    "params.title": lambda s: call(params=f'{{"title": "{s}"}}'),
    "params.key": lambda s: call(params=f'{{"{s}": 1}}'),
    "params.fields.list": lambda s: call(params=f'{{"fields": {{"list": ["ok", "{s}"]}}}}'),
    "steps.0.name": lambda s: f'{{"portal": "acme", "steps": [{{"name": "{s}", "method": "user.current"}}]}}',
    "idempotency_key": lambda s: call(extra=f', "idempotency_key": "{s}"'),
    "callback_url": lambda s: call(extra=f', "callback_url": "https://x.test/{s}"'),
}
EXPECTED_FIELD = {
    "params.key": None, "params.fields.list": "params.fields.list.1",
}
BAD_STRINGS = {
    "lone-high": "\\ud800", "lone-low": "\\udfff", "low-then-text": "\\udc00abc", "high-at-end": "abc\\ud83d",
    "reversed-pair": "\\ude00\\ud83d", "nul": "\\u0000", "nul-inside": "a\\u0000b",
}
for position, build in POSITIONS.items():
    for label, text in BAD_STRINGS.items():
        add(Case(f"{label}-in-{position}", body=raw(build(text)), status=400,
                 field=EXPECTED_FIELD.get(position, position)))

# --- bytes that are not UTF-8 JSON ----------------------------------------------------------------
add(
    Case("latin1-byte", body=b'{"portal": "\xff"}', status=400, field="body"),
    Case("overlong-slash", body=b'{"portal": "\xc0\xaf"}', status=400, field="body"),
    Case("cesu8-surrogate", body=b'{"portal": "\xed\xa0\x80"}', status=400, field="body"),
    Case("utf16-body", body='{"portal": "acme", "method": "user.current"}'.encode("utf-16"), status=400,
         field="body"),
    Case("utf8-bom", body=b"\xef\xbb\xbf" + raw(call()), status=400, field="body"),
    Case("raw-nul-byte", body=b'{"portal": "ac\x00me", "method": "user.current"}', status=400, field="body"),
)

# --- shapes the document refuses ------------------------------------------------------------------
add(
    Case("method-and-steps", body=raw('{"portal": "acme", "method": "user.current", '
                                      '"steps": [{"name": "a", "method": "user.current"}]}'),
         status=400, field="steps"),
    Case("params-with-steps", body=raw('{"portal": "acme", "params": {}, '
                                       '"steps": [{"name": "a", "method": "user.current"}]}'),
         status=400, field="params"),
    Case("empty-portal", body=raw(call(portal='""')), status=400, field="portal"),
    Case("long-portal", body=raw(call(portal='"' + "a" * 65 + '"')), status=400, field="portal"),
    Case("portal-with-space", body=raw(call(portal='"ac me"')), status=400, field="portal"),
    Case("portal-null", body=raw(call(portal="null")), status=400, field="portal"),
    Case("portal-list", body=raw(call(portal='["acme"]')), status=400, field="portal"),
    Case("no-portal", body=raw('{"method": "user.current"}'), status=400, field="portal"),
    Case("no-method", body=raw('{"portal": "acme"}'), status=400, field="method"),
    Case("empty-method", body=raw(call(method="")), status=400, field="method"),
    Case("method-number", body=raw('{"portal": "acme", "method": 5}'), status=400, field="method"),
    Case("method-null", body=raw('{"portal": "acme", "method": null}'), status=400, field="method"),
    Case("method-spaces", body=raw(call(method="crm lead list")), status=400, field="method"),
    Case("method-result-ref", body=raw(call(method="$result[a]")), status=400, field="method"),
    Case("method-xml", body=raw(call(method="crm.lead.list.xml")), status=400, field="method"),
    Case("method-too-long", body=raw(call(method="a." * 100 + "b")), status=400, field="method"),
    Case("params-list", body=raw(call(params="[]")), status=400, field="params"),
    Case("params-string", body=raw(call(params='"x"')), status=400, field="params"),
    Case("steps-object", body=raw('{"portal": "acme", "steps": {"a": 1}}'), status=400, field="steps"),
    Case("steps-empty", body=raw('{"portal": "acme", "steps": []}'), status=400, field="steps"),
    Case("steps-51", body=raw(json.dumps({"portal": "acme", "steps": [
        {"name": f"s{i}", "method": "user.current"} for i in range(51)]})), status=400, field="steps"),
    Case("step-names-repeat", body=raw('{"portal": "acme", "steps": [{"name": "a", "method": "user.current"}, '
                                       '{"name": "a", "method": "user.current"}]}'), status=400, field="steps"),
    Case("step-name-bad", body=raw('{"portal": "acme", "steps": [{"name": "a b", "method": "user.current"}]}'),
         status=400, field="steps.0.name"),
    Case("step-extra-key", body=raw('{"portal": "acme", "steps": [{"name": "a", "method": "x.y", "auth": 1}]}'),
         status=400, field="steps.0.auth"),
    Case("unknown-field", body=raw(call(extra=', "surprise": 1')), status=400, field="surprise"),
    Case("callback-ftp", body=raw(call(extra=', "callback_url": "ftp://x"')), status=400, field="callback_url"),
    Case("callback-javascript", body=raw(call(extra=', "callback_url": "javascript:alert(1)"')), status=400,
         field="callback_url"),
    Case("reason-too-long", body=raw(call(extra=', "reason": "' + "r" * 2001 + '"')), status=400, field="reason"),
    Case("body-array", body=raw("[1, 2]"), status=400, field="body"),
    Case("body-string", body=raw('"acme"'), status=400, field="body"),
    Case("body-number", body=raw("42"), status=400, field="body"),
    Case("body-null", body=raw("null"), status=400, field="body"),
    Case("body-empty", body=b"", status=400, field="body"),
    Case("body-whitespace", body=b" \n\t ", status=400, field="body"),
    Case("trailing-garbage", body=raw(call() + " x"), status=400, field="body"),
    Case("two-objects", body=raw(call() + call()), status=400, field="body"),
    Case("js-comment", body=raw("// hi\n" + call()), status=400, field="body"),
    Case("single-quotes", body=raw("{'portal': 'acme'}"), status=400, field="body"),
    Case("trailing-comma", body=raw('{"portal": "acme", "method": "user.current",}'), status=400, field="body"),
    Case("unterminated", body=raw('{"portal": "acme"'), status=400, field="body"),
    Case("too-large", body=raw(call(params='{"x": "' + "x" * (256 * 1024) + '"}')), status=413),
)

# --- batch sub-commands that carry batch control keys -------------------------------------------
CONTROL_COMMANDS = {
    "cmd-in-query": ("crm.lead.list?x=1&cmd[b]=im.message.add", "cmd"),
    "auth-in-query": ("crm.lead.list?auth=stolen-token", "auth"),
    "halt-in-query": ("crm.lead.list?halt=1", "halt"),
    "auth-uppercase": ("crm.lead.list?AUTH=x", "AUTH"),
    "cmd-percent-encoded": ("crm.lead.list?%63md[b]=im.message.add", "cmd"),
    "auth-array": ("crm.lead.list?auth[access_token]=x", "auth"),
    "cmd-leading-space": ("crm.lead.list?+cmd[a]=user.current", "cmd"),
}
for label, (command, key) in CONTROL_COMMANDS.items():
    add(Case(f"batch-{label}", body=raw(call("batch", json.dumps({"cmd": {"c": command}}))), status=400,
             field=f"params.cmd.c.{key}"))
    add(Case(f"batch-step-{label}", body=raw(json.dumps({"portal": "acme", "steps": [
        {"name": "first", "method": "user.current"},
        {"name": "b", "method": "batch", "params": {"cmd": {"c": command}, "halt": 0}}]})),
        status=400, field=f"steps.1.params.cmd.c.{key}"))
add(
    Case("batch-list-cmd-auth", body=raw(call("batch", json.dumps({"cmd": ["user.current?auth=x"]}))),
         status=400, field="params.cmd.0.auth"),
    Case("batch-rest3-form", body=raw(call("batch", json.dumps([{"method": "crm.item.list",
                                                                  "query": {"auth": "x"}}]))),
         status=400, field="params"),
    Case("batch-top-auth", body=raw(call("batch", json.dumps({"cmd": {"a": "user.current"}, "auth": "x"}))),
         status=400, field="params"),
    Case("batch-nested", body=raw(call("batch", json.dumps({"cmd": {"a": "batch?cmd[b]=user.current"}}))),
         status=403),
)

# --- idempotency keys: two headers (WSGI joins them with a comma), odd keys ---------------------
add(
    Case("two-idempotency-headers", body=raw(call()), headers={"Idempotency-Key": "key-1,key-2"}, status=400,
         field="Idempotency-Key"),
    Case("two-identical-idempotency-headers", body=raw(call()), headers={"Idempotency-Key": "k,k"}, status=400,
         field="Idempotency-Key"),
    Case("idempotency-header-vs-body", body=raw(call(extra=', "idempotency_key": "b"')),
         headers={"Idempotency-Key": "a"}, status=400, field="idempotency_key"),
    Case("idempotency-comma-in-body", body=raw(call(extra=', "idempotency_key": "a,b"')), status=400,
         field="idempotency_key"),
    Case("idempotency-tab", body=raw(call(extra=', "idempotency_key": "a\\tb"')), status=400,
         field="idempotency_key"),
    Case("idempotency-too-long", body=raw(call()), headers={"Idempotency-Key": "k" * 256}, status=400,
         field="idempotency_key"),
    Case("idempotency-empty-header", body=raw(call()), headers={"Idempotency-Key": ""}, status=400,
         field="idempotency_key"),
    Case("idempotency-non-ascii", body=raw(call()), headers={"Idempotency-Key": "clé"}, status=400,
         field="idempotency_key"),
)

# --- headers ------------------------------------------------------------------------------------
for label, value in {
    "no-scheme": "token", "basic": "Basic YTpi", "empty-bearer": "Bearer ", "long-token": "Bearer " + "t" * 300,
    "non-ascii": "Bearer jeton-é", "two-headers": "Bearer a,Bearer b", "nul": "Bearer a\x00b",
    "lowercase-only": "bearer",
}.items():
    add(Case(f"authorization-{label}", method="GET", body=None, headers={"Authorization": value}, status=401))
for label, content_type in {
    "text-plain": "text/plain", "form": "application/x-www-form-urlencoded", "multipart": "multipart/form-data; b=x",
    "two-headers": "application/json,application/json", "empty": "", "jsonx": "application/jsonx",
}.items():
    add(Case(f"content-type-{label}", body=raw(call()), content_type=content_type, status=415))
add(
    Case("content-length-text", body=raw(call()), headers={"Content-Length": "abc"}, status=400),
    Case("content-length-huge", body=raw(call()), headers={"Content-Length": "99999999999"}, status=413),
    Case("request-id-hostile", body=raw("[]"), headers={"X-Request-Id": "<script>\x00"}, status=400),
    Case("host-invalid", method="GET", headers={"Host": "bad host!"}, status=400),
)

# --- query strings ------------------------------------------------------------------------------
UUID_HEX = "0b7c5e2a3f6d4c1e9a8b2d4f6e8a0c1e"
for label, cursor in {
    "garbage": "abc", "old-base64-not-uuid": "MjAyNi0wMS0wMVQwMDowMDowMCswMDowMHxub3QtYS11dWlk",
    "not-uuid": "123-not-a-uuid", "hex-31": "1-" + UUID_HEX[:31], "hex-33": "1-" + UUID_HEX + "0",
    "uppercase-hex": "1-" + UUID_HEX.upper(), "18-digits": "9" * 18 + "-" + UUID_HEX,
    "negative": "-1-" + UUID_HEX, "dashed-uuid": "1-0b7c5e2a-3f6d-4c1e-9a8b-2d4f6e8a0c1e",
    "fullwidth-digits": "１２３-" + UUID_HEX, "nul": "1%00-" + UUID_HEX, "percent": "%%%",
    "sql": "1-' OR 1=1 --", "newline": "1-" + UUID_HEX + "%0A",
}.items():
    add(Case(f"cursor-{label}", method="GET", path=f"{PLANS}?cursor={cursor}", status=400, field="cursor"))
for name, values in {
    "limit": ["0", "101", "-1", "1e3", "abc", "99999999999999999999999", "%00"],
    "status": ["bogus", "PENDING_APPROVAL", "%00", "approved%01"],
    "portal": ["%00", "ac%00me", "%01", "%7F"],
}.items():
    for value in values:
        add(Case(f"list-{name}-{value[:12]}", method="GET", path=f"{PLANS}?{name}={value}", status=400, field=name))
for value in ["31", "-1", "abc", "1.5", "9" * 30, "%00"]:
    add(Case(f"wait-{value[:12]}", method="GET", path=f"{PLANS}/{PLAN_ID}?wait={value}", status=400, field="wait"),
        Case(f"submit-wait-{value[:12]}", path=f"{PLANS}?wait={value}", body=raw(call()), status=400, field="wait"))
for value in ["maybe", "2", "%00", "yes"]:
    add(Case(f"dry-run-{value}", path=f"{PLANS}?dry_run={value}", body=raw(call()), status=400, field="dry_run"))
add(
    Case("query-name-control", method="GET", path=f"{PLANS}?%01x=1", status=400),
    Case("query-too-many-fields", method="GET", path=PLANS + "?" + "&".join(f"f{i}=1" for i in range(1100)),
         status=400),
    Case("method-detail-no-portal", method="GET", path="/api/v1/methods/crm.lead.list", status=400, field="portal"),
    Case("method-detail-empty-portal", method="GET", path="/api/v1/methods/crm.lead.list?portal=", status=400,
         field="portal"),
    Case("method-detail-nul-portal", method="GET", path="/api/v1/methods/crm.lead.list?portal=ac%00me", status=400,
         field="portal"),
    Case("method-detail-unknown-portal", method="GET", path="/api/v1/methods/crm.lead.list?portal=nowhere",
         status=404),
    Case("method-detail-nul-name", method="GET", path="/api/v1/methods/crm%00lead?portal=acme", status=400,
         field="name"),
    Case("method-detail-space-name", method="GET", path="/api/v1/methods/crm%20lead?portal=acme", status=400,
         field="method"),
    Case("method-detail-xml", method="GET", path="/api/v1/methods/crm.lead.list.xml?portal=acme", status=400),
    Case("method-detail-result", method="GET", path="/api/v1/methods/$result[a]?portal=acme", status=400),
    Case("method-detail-double-encoded", method="GET", path="/api/v1/methods/crm%252520lead?portal=acme",
         status=400),
    Case("method-detail-surrogate-bytes", method="GET", path="/api/v1/methods/%ED%A0%80?portal=acme", status=400),
)

# --- paths: unknown, trailing slashes, odd ids; every method ------------------------------------
UNKNOWN_PATHS = [
    "/api/v1/nothing", f"{PLANS}/", "/api/v1/capabilities/", "/api/v1/openapi.json/", "/api/v1/", "/api/v1",
    "/api/", "/api", "/api/v2/plans", f"{PLANS}/{PLAN_ID}/cancel/", f"{PLANS}/{PLAN_ID}/", "/api/v1/PLANS",
    "/api/v1//plans", "/healthz/", "/readyz/", "/healthz/x", f"{PLANS}/{PLAN_ID}/cancel/extra", "/api/v1/methods",
    "/api/v1/methods/", "/api/v1/%ff", "/api/v1/plans;x", "/api/v1/" + "a" * 5000, "/api/v1/%00",
    "/api/v1/..%2f..%2fadmin/",
]
for path in UNKNOWN_PATHS:
    for method in ("GET", "POST", "DELETE"):
        add(Case(f"unknown-{method}-{short(path)}", method=method, path=path, body=raw(call()) if method == "POST"
                 else None, status=404))
for plan_id in ["not-a-uuid", "00000000-0000-0000-0000-000000000000", "%00", "{" + PLAN_ID + "}",
                "urn:uuid:" + PLAN_ID, PLAN_ID.upper().replace("-", ""), "1", "%ED%A0%80"]:
    add(Case(f"plan-id-{plan_id[:20]}", method="GET", path=f"{PLANS}/{plan_id}"),
        Case(f"cancel-id-{plan_id[:20]}", method="POST", path=f"{PLANS}/{plan_id}/cancel"))

# --- HTTP methods an endpoint does not take: 405 with Allow ---------------------------------------
NOT_ALLOWED = {
    PLANS: (["PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"], "GET, POST"),
    f"{PLANS}/{PLAN_ID}": (["POST", "PUT", "DELETE", "PATCH"], "GET"),
    f"{PLANS}/{PLAN_ID}/cancel": (["GET", "PUT", "DELETE"], "POST"),
    "/api/v1/capabilities": (["POST", "DELETE"], "GET"),
    "/api/v1/methods/crm.lead.list": (["POST", "PUT"], "GET"),
    "/api/v1/openapi.json": (["POST", "DELETE"], "GET"),
    "/healthz": (["POST", "PUT"], "GET"),
    "/readyz": (["POST"], "GET"),
}
for path, (methods, allow) in NOT_ALLOWED.items():
    for method in methods:
        add(Case(f"405-{method}-{short(path)}", method=method, path=path, status=405, allow=allow))


# --------------------------------------------------------------------------------------------------


def test_the_corpus_is_large_and_ids_are_unique():
    assert len(CASES) >= 200
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.fixture
def counts():
    def snapshot():
        return (Plan.objects.count(), IdempotencyRecord.objects.count(), AuditEntry.objects.count())

    return snapshot


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_request_is_a_json_4xx_and_writes_nothing(client, agent, counts, case):
    before = counts()
    headers = {"Authorization": f"Bearer {agent.token}", **case.headers}
    extra = {"CONTENT_TYPE": case.content_type}
    for key, value in headers.items():
        name = key.upper().replace("-", "_")
        extra[name if name in ("CONTENT_LENGTH",) else "HTTP_" + name] = value
    if "HTTP_HOST" in extra:
        extra["SERVER_NAME"] = "testserver"
    response = client.generic(case.method, case.path, case.body or b"", content_type=case.content_type, **extra)

    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    assert response["Content-Type"] == "application/json"
    error = json.loads(response.content)["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str) and error["message"]
    assert error["code"] in served_error_codes()
    if case.status is not None:
        assert response.status_code == case.status, error
    if case.field is not None:
        assert error.get("field") == case.field, error
    if case.field_prefix is not None:
        assert error.get("field", "").startswith(case.field_prefix), error
    if case.allow is not None:
        assert response["Allow"] == case.allow
    assert counts() == before
