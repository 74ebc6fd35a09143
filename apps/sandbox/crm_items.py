"""Smart-process items through the universal CRM API (`crm.item.*`, scope `crm`,
api-reference/crm/universal/). Names are camelCase, IDs are integers, one item comes as
`{"item": {...}}`, a list as `{"items": [...]}` with v2 `total`/`next`, `delete` answers `[]`.
The portal's smart-process types are `SandboxPortal.smart_process_types`; another
`entityTypeId` answers `NOT_FOUND` "SPA not found", a missing item `NOT_FOUND` "Element not found"
(samples/error_crm_item_get_not_found.json)."""

from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from . import clock
from .errors import SandboxError
from .methods import (
    Ctx,
    Outcome,
    _param,
    _positive_int,
    iso,
    page,
    parse_start,
    parse_v2_filter,
    parse_v2_order,
    parse_v2_select,
)
from .records import MAX_ID, Condition, record_create, record_delete, record_get, record_query, record_update

# camelCase field -> (type, flags, UPPER_NAME, title); flags: r read-only, m multiple, i immutable
FIELDS: dict[str, tuple[str, str, str, str]] = {
    "id": ("integer", "r", "ID", "ID"),
    "xmlId": ("string", "", "XML_ID", "External code"),
    "title": ("string", "", "TITLE", "Name"),
    "createdBy": ("user", "r", "CREATED_BY", "Created by"),
    "updatedBy": ("user", "r", "UPDATED_BY", "Updated by"),
    "movedBy": ("user", "r", "MOVED_BY", "Moved by"),
    "createdTime": ("datetime", "r", "CREATED_TIME", "Created at"),
    "updatedTime": ("datetime", "r", "UPDATED_TIME", "Updated at"),
    "movedTime": ("datetime", "r", "MOVED_TIME", "Moved at"),
    "categoryId": ("crm_category", "i", "CATEGORY_ID", "Pipeline"),
    "opened": ("boolean", "", "OPENED", "Available to everyone"),
    "stageId": ("crm_status", "", "STAGE_ID", "Stage"),
    "previousStageId": ("crm_status", "r", "PREVIOUS_STAGE_ID", "Previous stage"),
    "begindate": ("date", "", "BEGINDATE", "Start date"),
    "closedate": ("date", "", "CLOSEDATE", "End date"),
    "companyId": ("crm_company", "", "COMPANY_ID", "Company"),
    "contactId": ("crm_contact", "", "CONTACT_ID", "Contact"),
    "opportunity": ("double", "", "OPPORTUNITY", "Amount"),
    "isManualOpportunity": ("boolean", "", "IS_MANUAL_OPPORTUNITY", "Manual amount"),
    "taxValue": ("double", "", "TAX_VALUE", "Tax"),
    "currencyId": ("crm_currency", "", "CURRENCY_ID", "Currency"),
    "mycompanyId": ("crm_company", "", "MYCOMPANY_ID", "Your company details"),
    "sourceId": ("crm_status", "", "SOURCE_ID", "Source"),
    "sourceDescription": ("text", "", "SOURCE_DESCRIPTION", "Source information"),
    "webformId": ("integer", "r", "WEBFORM_ID", "Created by CRM form"),
    "assignedById": ("user", "", "ASSIGNED_BY_ID", "Responsible person"),
    "lastActivityBy": ("user", "r", "LAST_ACTIVITY_BY", "Last activity by"),
    "lastActivityTime": ("datetime", "r", "LAST_ACTIVITY_TIME", "Last activity"),
    "observers": ("user", "m", "OBSERVERS", "Observers"),
    "contactIds": ("crm_contact", "m", "CONTACT_IDS", "Contacts"),
    "entityTypeId": ("integer", "r", "ENTITY_TYPE_ID", "Entity type"),
}
_INTS = {"integer", "user", "crm_company", "crm_contact", "crm_category"}
_UPPER = {upper: name for name, (_, _, upper, _) in FIELDS.items()}
_ANY = {**{name.upper(): name for name in FIELDS}, **_UPPER}


def _field(name: str) -> str:
    """A filter/order/select name (camelCase or UPPER_CASE, any case) as stored."""
    upper = name.upper()
    return "ID" if upper == "ID" else _ANY.get(upper, name)


def _not_found(what: str = "Element not found") -> SandboxError:
    return SandboxError("NOT_FOUND", what, status=400)


def _entity(ctx: Ctx, params: dict) -> tuple[int, str]:
    type_id = _positive_int(_param(params, "entityTypeId"))
    types = ctx.portal.smart_process_types if isinstance(ctx.portal.smart_process_types, list) else []
    if type_id is None or type_id not in types:
        raise _not_found("SPA not found")
    return type_id, f"dynamic_{type_id}"


def _invalid(name: str, what: str) -> SandboxError:
    return SandboxError("INVALID_ARG_VALUE", f"Field `{name}` must be {what}", status=400)


def _value(name: str, ftype: str, flags: str, value):
    if "m" in flags:
        values = value if isinstance(value, list) else ([] if value in (None, "") else [value])
        return [_value(name, ftype, "", v) for v in values]
    if ftype in _INTS:
        if value in (None, ""):
            return 0 if ftype != "user" else None
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise _invalid(name, "an integer")
        try:
            number = int(str(value).strip())
        except ValueError:
            raise _invalid(name, "an integer") from None
        if abs(number) > MAX_ID:
            raise _invalid(name, "an integer")
        return number
    if ftype == "double":
        if value in (None, ""):
            return 0
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise _invalid(name, "a number")
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise _invalid(name, "a number") from None
        if not number.is_finite():
            raise _invalid(name, "a number")
        return int(number) if number == number.to_integral_value() else float(number)
    if ftype == "boolean":
        if isinstance(value, bool):
            return "Y" if value else "N"
        return "Y" if str(value).strip().upper() in ("Y", "1", "TRUE") else "N"
    if value is None:
        return None
    if isinstance(value, dict | list):
        raise _invalid(name, "a scalar")
    return str(value)


def _clean(raw, *, creating: bool) -> dict:
    if not isinstance(raw, dict):
        raise SandboxError("INVALID_ARG_VALUE", "Parameter `fields` must be an object", status=400)
    clean = {}
    for key, value in raw.items():
        key = str(key)
        name = key if key in FIELDS else _UPPER.get(key.upper())
        if key.startswith(("ufCrm", "UF_CRM_")):
            clean[key if key.startswith("ufCrm") else _camel_uf(key)] = value
            continue
        if name is None:
            continue
        ftype, flags, _, _ = FIELDS[name]
        if "r" in flags or ("i" in flags and not creating):
            continue
        clean[name] = _value(name, ftype, flags, value)
    return clean


def _camel_uf(upper: str) -> str:
    # UF_CRM_2_1639669411830 -> ufCrm2_1639669411830
    rest = upper[len("UF_CRM_"):]
    head, _, tail = rest.partition("_")
    return f"ufCrm{head}_{tail}" if tail else f"ufCrm_{head}"


def _view(row: dict, select: list[str] | None) -> dict:
    custom = sorted(k for k in row if k.startswith("ufCrm"))
    names = [*FIELDS, *custom]
    if select and "*" not in select:
        wanted = {"id", *(n if (n := _field(s)) != "ID" else "id" for s in select)}
        names = [n for n in names if n in wanted]
    return {n: row.get(n) for n in names}


def item_handlers(on_change: Callable | None = None) -> dict[str, Callable[[Ctx, dict], Outcome]]:
    def notify(ctx: Ctx, entity: str, verb: str, item_id: int) -> None:
        if on_change is not None:
            on_change(ctx, entity, verb, item_id)

    def _id(params: dict) -> int:
        item_id = _positive_int(_param(params, "id"))
        if item_id is None:
            raise _not_found()
        return item_id

    def add(ctx: Ctx, params: dict) -> Outcome:
        type_id, entity = _entity(ctx, params)
        fields = _clean(_param(params, "fields"), creating=True)
        stamp, user = iso(clock.now()), ctx.user_id

        def build(new_id: int) -> dict:
            data = {name: None for name in FIELDS}
            data.update(id=new_id, title=f"Item #{new_id}", createdBy=user, updatedBy=user, movedBy=user,
                        createdTime=stamp, updatedTime=stamp, movedTime=stamp, categoryId=0, opened="N",
                        stageId=f"DT{type_id}_0:NEW", begindate=stamp, closedate=stamp, companyId=0, contactId=0,
                        opportunity=0, isManualOpportunity="N", taxValue=0, currencyId="USD", mycompanyId=0,
                        webformId=0, assignedById=user, lastActivityBy=user, lastActivityTime=stamp,
                        observers=[], contactIds=[], entityTypeId=type_id)
            data.update(fields)
            if not data.get("title"):
                data["title"] = f"Item #{new_id}"
            return data

        new_id, data = record_create(portal=ctx.portal, entity=entity, build=build)
        notify(ctx, entity, "add", new_id)
        return Outcome({"item": _view(data, None)})

    def get(ctx: Ctx, params: dict) -> Outcome:
        _, entity = _entity(ctx, params)
        row = record_get(portal=ctx.portal, entity=entity, record_id=_id(params))
        if row is None:
            raise _not_found()
        return Outcome({"item": _view(row, None)})

    def update(ctx: Ctx, params: dict) -> Outcome:
        _, entity = _entity(ctx, params)
        item_id = _id(params)
        fields = _clean(_param(params, "fields"), creating=False)
        stamp = iso(clock.now())

        def apply(data: dict) -> dict:
            if "stageId" in fields and fields["stageId"] != data.get("stageId"):
                data.update(previousStageId=data.get("stageId"), movedBy=ctx.user_id, movedTime=stamp)
            data.update(fields)
            data.update(updatedBy=ctx.user_id, updatedTime=stamp)
            return data

        row = record_update(portal=ctx.portal, entity=entity, record_id=item_id, apply=apply)
        if row is None:
            raise _not_found()
        notify(ctx, entity, "update", item_id)
        return Outcome({"item": _view(row, None)})

    def delete(ctx: Ctx, params: dict) -> Outcome:
        _, entity = _entity(ctx, params)
        item_id = _id(params)
        if not record_delete(portal=ctx.portal, entity=entity, record_id=item_id):
            raise _not_found("Item not found")
        notify(ctx, entity, "delete", item_id)
        return Outcome([])

    def list_(ctx: Ctx, params: dict) -> Outcome:
        _, entity = _entity(ctx, params)
        conditions = [Condition(_field(c.field), c.op, c.value)
                      for c in parse_v2_filter(_param(params, "filter"), upper=False)]
        order = [(_field(f), d) for f, d in parse_v2_order(_param(params, "order"))]
        select = parse_v2_select(_param(params, "select"))
        offset, count = parse_start(params)
        rows, total = record_query(portal=ctx.portal, entity=entity, conditions=conditions, order=order,
                                   offset=offset, count=count)
        total, nxt = page(offset, count, total, len(rows))
        return Outcome({"items": [_view(r, select) for r in rows]}, total=total, next=nxt)

    def fields_(ctx: Ctx, params: dict) -> Outcome:
        _entity(ctx, params)
        return Outcome({"fields": {
            name: {"type": ftype, "isRequired": False, "isReadOnly": "r" in flags, "isImmutable": "i" in flags,
                   "isMultiple": "m" in flags, "isDynamic": False, "title": title, "upperName": upper}
            for name, (ftype, flags, upper, title) in FIELDS.items()}})

    return {"add": add, "get": get, "update": update, "delete": delete, "list": list_, "fields": fields_}
