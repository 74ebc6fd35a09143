"""Scope `basic` service methods and users: `server.time`, `scope`, `methods`, `method.get`,
`feature.get`, `app.info`, `profile`, `user.current`, `department.get`, and REST 3.0
`rest.scope.list`. Shapes and errors as on the method pages (api-reference/common/...)."""

from datetime import UTC, datetime

from . import clock
from .errors import SandboxError
from .methods import Ctx, Outcome, _param, iso
from .models import SandboxOAuthClient


def _flag(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "y", "yes")
    return bool(value)


def user_current(ctx: Ctx, params: dict) -> Outcome:
    """The fields and JSON types of samples/response_batch.json (`get_user`)."""
    registered = datetime.fromtimestamp(ctx.portal.created_at.timestamp(), tz=UTC)
    return Outcome({
        "ID": str(ctx.user_id),
        "ACTIVE": True,
        "NAME": "Sandbox",
        "LAST_NAME": f"User {ctx.user_id}",
        "EMAIL": f"user{ctx.user_id}@{ctx.portal.slug}.sandbox.invalid",
        "LAST_LOGIN": iso(clock.now()),
        "DATE_REGISTER": registered.isoformat(timespec="seconds"),
        "IS_ONLINE": "Y",
        "TIMESTAMP_X": registered.strftime("%d.%m.%Y %H:%M:%S"),
        "LAST_ACTIVITY_DATE": datetime.fromtimestamp(clock.now(), tz=UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "PERSONAL_GENDER": "",
        "PERSONAL_BIRTHDAY": "",
        "UF_EMPLOYMENT_DATE": "",
        "UF_DEPARTMENT": [1],
    })


def profile(ctx: Ctx, params: dict) -> Outcome:
    return Outcome({
        "ID": str(ctx.user_id),
        "ADMIN": ctx.is_admin,
        "NAME": "Sandbox",
        "LAST_NAME": f"User {ctx.user_id}",
        "PERSONAL_GENDER": "",
        "TIME_ZONE": "",
    })


def department_get(ctx: Ctx, params: dict) -> Outcome:
    rows = [{"ID": "1", "NAME": ctx.portal.slug.upper(), "SORT": 500}]
    return Outcome(rows, total=len(rows))


def server_time(ctx: Ctx, params: dict) -> Outcome:
    return Outcome(iso(clock.now()))


def _registry():
    from .registry import ALL_SCOPES, V2_METHODS

    return ALL_SCOPES, V2_METHODS


def scope(ctx: Ctx, params: dict) -> Outcome:
    """The caller's own scopes, without `basic`; `full=true`: every scope the portal knows."""
    all_scopes, _ = _registry()
    if _flag(_param(params, "full")) or ctx.scopes is None:
        return Outcome([s for s in all_scopes if s != "basic"])
    return Outcome(sorted(s for s in ctx.scopes if s != "basic"))


def _available(ctx: Ctx, spec) -> bool:
    return "basic" in spec.scopes or ctx.scopes is None or any(s in ctx.scopes for s in spec.scopes)


def methods(ctx: Ctx, params: dict) -> Outcome:
    """Methods available to the caller; `full=true` every method; `scope=X` the methods of scope X."""
    _, registry = _registry()
    wanted = _param(params, "scope")
    if isinstance(wanted, str) and wanted:
        return Outcome([name for name, spec in registry.items() if wanted.lower() in spec.scopes])
    if _flag(_param(params, "full")):
        return Outcome(list(registry))
    return Outcome([name for name, spec in registry.items() if _available(ctx, spec)])


def method_get(ctx: Ctx, params: dict) -> Outcome:
    _, registry = _registry()
    name = _param(params, "name")
    spec = registry.get(name.strip().lower()) if isinstance(name, str) and name.strip() else None
    if spec is None:
        return Outcome({"isExisting": False, "isAvailable": False})
    return Outcome({"isExisting": True, "isAvailable": _available(ctx, spec)})


FEATURES = ("rest_offline_extended", "rest_auth_connector")


def feature_get(ctx: Ctx, params: dict) -> Outcome:
    code = _param(params, "CODE")
    if not isinstance(code, str) or not code.strip():
        raise SandboxError("CODE_EMPTY", "CODE can't be empty", status=400)
    features = ctx.portal.features if isinstance(ctx.portal.features, dict) else {}
    enabled = features.get(code.strip(), code.strip() in FEATURES)
    return Outcome({"value": "Y" if enabled else "N"})


def app_info(ctx: Ctx, params: dict) -> Outcome:
    if ctx.client_id is None:
        raise SandboxError("ACCESS_DENIED", "Access denied! Application context required", status=400)
    client = SandboxOAuthClient.objects.get(client_id=ctx.client_id)
    return Outcome({
        "ID": client.pk,
        "CODE": client.client_id,
        "VERSION": 1,
        "STATUS": client.status,
        "INSTALLED": True,
        "PAYMENT_EXPIRED": "N",
        "DAYS": None,
        "LANGUAGE_ID": "en",
        "LICENSE": "en_ent250",
        "LICENSE_TYPE": "ent250",
        "LICENSE_FAMILY": "ent",
    })


def rest_scope_list(ctx: Ctx, params: dict) -> Outcome:
    from .registry import V3_METHODS

    return Outcome({"items": [{"method": name, "scope": spec.scopes[0]} for name, spec in sorted(V3_METHODS.items())
                              if spec.handler is not None]})


def biconnector_connector_get(ctx: Ctx, params: dict) -> Outcome:
    """The sandbox has no BI connectors; the page's errors come with HTTP 200
    (samples/error_biconnector_status_200.json)."""
    raw = _param(params, "id")
    if raw in (None, ""):
        raise SandboxError("VALIDATION_ID_NOT_PROVIDED", "ID is missing.", status=200)
    if not str(raw).strip().isdigit() or int(str(raw).strip()) <= 0:
        raise SandboxError("VALIDATION_INVALID_ID_FORMAT", "ID has to be a positive integer.", status=200)
    raise SandboxError("CONNECTOR_NOT_FOUND", "Connector was not found.", status=200)
