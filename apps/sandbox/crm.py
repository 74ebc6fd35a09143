"""CRM leads, deals and contacts (v2 `crm.{lead,deal,contact}.*`): the documented field sets of
the `crm.*.get` pages and samples/response_crm_lead_list.json, in their order and JSON types.

Multi-fields (`PHONE`, `EMAIL`, `WEB`, `IM`) are lists of `{ID, VALUE_TYPE, VALUE, TYPE_ID}`:
an item without `ID` is added (it gets a new portal-wide ID), an item with an `ID` and an empty
`VALUE` deletes that item, an item with an `ID` and a value changes it, items not mentioned stay.
`HAS_PHONE`, `HAS_EMAIL` and `HAS_IMOL` follow the lists. `get` shows the non-empty lists; `list`
shows them only when selected.
"""

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
from .records import (
    MAX_ID,
    next_ids,
    record_create,
    record_delete,
    record_get,
    record_query,
    record_update,
)

# field -> (type, flags); flags: r read-only, q required, m multiple, i immutable
_S, _R = ("string", ""), ("string", "r")
_ADDRESS = {
    "ADDRESS": _S, "ADDRESS_2": _S, "ADDRESS_CITY": _S, "ADDRESS_POSTAL_CODE": _S, "ADDRESS_REGION": _S,
    "ADDRESS_PROVINCE": _S, "ADDRESS_COUNTRY": _S, "ADDRESS_COUNTRY_CODE": _S,
    "ADDRESS_LOC_ADDR_ID": ("integer", "r"),
}
_UTM = {"UTM_SOURCE": _S, "UTM_MEDIUM": _S, "UTM_CAMPAIGN": _S, "UTM_CONTENT": _S, "UTM_TERM": _S}
_OWNERS = {
    "ASSIGNED_BY_ID": ("user", ""), "CREATED_BY_ID": ("user", "r"), "MODIFY_BY_ID": ("user", "r"),
    "DATE_CREATE": ("datetime", "r"), "DATE_MODIFY": ("datetime", "r"),
}
_ORIGIN = {"ORIGINATOR_ID": _S, "ORIGIN_ID": _S}
_MOVED = {"MOVED_BY_ID": ("user", "r"), "MOVED_TIME": ("datetime", "r")}
_ACTIVITY = {"LAST_ACTIVITY_BY": ("user", "r"), "LAST_ACTIVITY_TIME": ("datetime", "r")}
_MULTI = {name: ("crm_multifield", "m") for name in ("PHONE", "EMAIL", "WEB", "IM")}
_FLAGS = {"HAS_PHONE": ("char", "r"), "HAS_EMAIL": ("char", "r"), "HAS_IMOL": ("char", "r")}

CRM_ENTITIES: dict[str, dict] = {
    "lead": {
        "fields": {
            "ID": ("integer", "r"), "TITLE": _S, "HONORIFIC": ("crm_status", ""), "NAME": _S, "SECOND_NAME": _S,
            "LAST_NAME": _S, "COMPANY_TITLE": _S, "COMPANY_ID": ("crm_company", ""),
            "CONTACT_ID": ("crm_contact", ""), "IS_RETURN_CUSTOMER": ("char", "r"), "BIRTHDATE": ("date", ""),
            "SOURCE_ID": ("crm_status", ""), "SOURCE_DESCRIPTION": _S, "STATUS_ID": ("crm_status", ""),
            "STATUS_DESCRIPTION": _S, "POST": _S, "COMMENTS": _S, "CURRENCY_ID": ("crm_currency", ""),
            "OPPORTUNITY": ("double", ""), "IS_MANUAL_OPPORTUNITY": ("char", ""), **_FLAGS, **_OWNERS,
            "DATE_CLOSED": ("datetime", "r"), "STATUS_SEMANTIC_ID": _R, "OPENED": ("char", ""), **_ORIGIN,
            **_MOVED, **_ADDRESS, **_UTM, **_ACTIVITY, **_MULTI,
        },
        "defaults": {"TITLE": "", "STATUS_ID": "NEW", "STATUS_SEMANTIC_ID": "P", "CURRENCY_ID": "USD",
                     "OPPORTUNITY": "0.00", "IS_MANUAL_OPPORTUNITY": "N", "OPENED": "Y", "COMPANY_ID": "0",
                     "IS_RETURN_CUSTOMER": "N", "BIRTHDATE": "", "DATE_CLOSED": ""},
        "stage": "STATUS_ID",
        "semantic": {"CONVERTED": "S", "JUNK": "F"},
    },
    "deal": {
        "fields": {
            "ID": ("integer", "r"), "TITLE": _S, "TYPE_ID": ("crm_status", ""), "STAGE_ID": ("crm_status", ""),
            "PROBABILITY": ("integer", ""), "CURRENCY_ID": ("crm_currency", ""), "OPPORTUNITY": ("double", ""),
            "IS_MANUAL_OPPORTUNITY": ("char", ""), "TAX_VALUE": ("double", ""), "LEAD_ID": ("crm_lead", "r"),
            "COMPANY_ID": ("crm_company", ""), "CONTACT_ID": ("crm_contact", ""), "QUOTE_ID": ("crm_quote", "r"),
            "BEGINDATE": ("date", ""), "CLOSEDATE": ("date", ""), **_OWNERS, "OPENED": ("char", ""),
            "CLOSED": ("char", ""), "COMMENTS": _S, "ADDITIONAL_INFO": _S, "LOCATION_ID": _S,
            "CATEGORY_ID": ("crm_category", "i"), "STAGE_SEMANTIC_ID": _R, "IS_NEW": ("char", "r"),
            "IS_RECURRING": ("char", "r"), "IS_RETURN_CUSTOMER": ("char", "r"),
            "IS_REPEATED_APPROACH": ("char", "r"), "SOURCE_ID": ("crm_status", ""), "SOURCE_DESCRIPTION": _S,
            **_ORIGIN, **_MOVED, "LAST_ACTIVITY_TIME": ("datetime", "r"), **_UTM,
            "LAST_ACTIVITY_BY": ("user", "r"),
        },
        "defaults": {"TITLE": "", "TYPE_ID": "SALE", "CATEGORY_ID": "0", "STAGE_ID": "NEW", "STAGE_SEMANTIC_ID": "P",
                     "IS_NEW": "Y", "CURRENCY_ID": "USD", "OPPORTUNITY": "0.00", "IS_MANUAL_OPPORTUNITY": "N",
                     "TAX_VALUE": "0.00", "COMPANY_ID": "0", "OPENED": "Y", "CLOSED": "N", "IS_RECURRING": "N",
                     "IS_RETURN_CUSTOMER": "N", "IS_REPEATED_APPROACH": "N"},
        "stage": "STAGE_ID",
        "semantic": {"WON": "S", "LOSE": "F"},
    },
    "contact": {
        "fields": {
            "ID": ("integer", "r"), "POST": _S, "COMMENTS": _S, "HONORIFIC": ("crm_status", ""), "NAME": _S,
            "SECOND_NAME": _S, "LAST_NAME": _S, "PHOTO": ("file", ""), "LEAD_ID": ("crm_lead", "r"),
            "TYPE_ID": ("crm_status", ""), "SOURCE_ID": ("crm_status", ""), "SOURCE_DESCRIPTION": _S,
            "COMPANY_ID": ("crm_company", ""), "BIRTHDATE": ("date", ""), "EXPORT": ("char", ""), **_FLAGS,
            "DATE_CREATE": ("datetime", "r"), "DATE_MODIFY": ("datetime", "r"), "ASSIGNED_BY_ID": ("user", ""),
            "CREATED_BY_ID": ("user", "r"), "MODIFY_BY_ID": ("user", "r"), "OPENED": ("char", ""), **_ORIGIN,
            "ORIGIN_VERSION": _S, "FACE_ID": ("integer", "r"), "LAST_ACTIVITY_TIME": ("datetime", "r"),
            **{k: v for k, v in _ADDRESS.items() if k != "ADDRESS_COUNTRY_CODE"}, **_UTM,
            "LAST_ACTIVITY_BY": ("user", "r"), **_MULTI,
        },
        "defaults": {"TYPE_ID": "CLIENT", "OPENED": "Y", "EXPORT": "Y", "BIRTHDATE": "", "COMPANY_ID": None},
    },
}

_INT_TYPES = ("integer", "user", "crm_company", "crm_contact", "crm_lead", "crm_category", "crm_quote")


def _invalid(name: str, what: str) -> SandboxError:
    return SandboxError("", f"Field '{name}' must be {what}.", status=400)


def _multi_items(name: str, value) -> list[dict]:
    """Validate a multi-field's items: [{"ID"?: str, "VALUE": str, "VALUE_TYPE": str}]."""
    items = value
    if isinstance(items, dict):
        items = list(items.values())
    if isinstance(items, str | int) and not isinstance(items, bool):
        items = [{"VALUE": str(items)}]
    if items is None:
        items = []
    if not isinstance(items, list):
        raise _invalid(name, "a list of {VALUE, VALUE_TYPE}")
    out = []
    for item in items:
        if isinstance(item, str):
            item = {"VALUE": item}
        if not isinstance(item, dict):
            raise _invalid(name, "a list of {VALUE, VALUE_TYPE}")
        upper = {str(k).upper(): v for k, v in item.items()}
        raw_value, raw_type, raw_id = upper.get("VALUE", ""), upper.get("VALUE_TYPE", "WORK"), upper.get("ID")
        if not isinstance(raw_value, str | int) or isinstance(raw_value, bool) or not isinstance(raw_type, str):
            raise _invalid(name, "a list of {VALUE, VALUE_TYPE}")
        clean = {"VALUE": str(raw_value).strip(), "VALUE_TYPE": raw_type.strip().upper() or "WORK"}
        if raw_id not in (None, ""):
            item_id = _positive_int(raw_id)
            if item_id is None:
                raise _invalid(name, "a list whose ID values are positive integers")
            clean["ID"] = str(item_id)
        out.append(clean)
    return out


def _crm_value(name: str, ftype: str, value):
    if ftype in _INT_TYPES:
        if value in (None, ""):
            return None if ftype != "integer" else "0"
        if isinstance(value, bool) or not isinstance(value, int | str | float):
            raise _invalid(name, "integer")
        try:
            number = int(str(value).strip())
        except ValueError:
            raise _invalid(name, "integer") from None
        if abs(number) > MAX_ID:
            raise _invalid(name, "integer")
        return str(number)
    if ftype == "double":
        if value in (None, ""):
            return "0.00"
        if isinstance(value, bool) or not isinstance(value, int | str | float):
            raise _invalid(name, "a number")
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            raise _invalid(name, "a number") from None
        if not number.is_finite():
            raise _invalid(name, "a number")
        return f"{number:.2f}"
    if ftype == "crm_multifield":
        return _multi_items(name, value)
    if value is None:
        return None
    if isinstance(value, dict | list):
        raise _invalid(name, "a scalar")
    if isinstance(value, bool):
        return "Y" if value else "N"
    return str(value)


def crm_clean_fields(entity: str, raw, *, creating: bool) -> dict:
    if not isinstance(raw, dict):
        raise SandboxError("", "Parameter 'fields' must be array.", status=400)
    spec = CRM_ENTITIES[entity]["fields"]
    clean = {}
    for key, value in raw.items():
        name = str(key).strip().upper()
        if name.startswith("UF_"):
            if isinstance(value, dict):
                value = list(value.values())
            clean[name] = value
            continue
        if name not in spec:
            continue  # a real portal ignores unknown fields
        ftype, flags = spec[name]
        if "r" in flags or ("i" in flags and not creating):
            continue
        clean[name] = _crm_value(name, ftype, value)
    return clean


def _merge_multi(portal, name: str, current: list[dict], changes: list[dict]) -> list[dict]:
    items = [dict(i) for i in current]
    by_id = {i["ID"]: i for i in items}
    additions = [c for c in changes if "ID" not in c and c["VALUE"]]
    new_ids = iter(next_ids(portal=portal, entity="crm_multifield", count=len(additions)))
    for change in changes:
        if "ID" in change:
            target = by_id.get(change["ID"])
            if target is None:
                continue  # an ID this record does not have changes nothing
            if not change["VALUE"]:
                items = [i for i in items if i["ID"] != change["ID"]]
            else:
                target.update(VALUE=change["VALUE"], VALUE_TYPE=change["VALUE_TYPE"])
        elif change["VALUE"]:
            items.append({"ID": str(next(new_ids)), "VALUE_TYPE": change["VALUE_TYPE"], "VALUE": change["VALUE"],
                          "TYPE_ID": name})
    return [{"ID": i["ID"], "VALUE_TYPE": i["VALUE_TYPE"], "VALUE": i["VALUE"], "TYPE_ID": name} for i in items]


def _apply(entity: str, ctx: Ctx, data: dict, fields: dict, stamp: str, *, creating: bool) -> dict:
    """Merge cleaned `fields` into a record: multi-fields by item ID, stage moves, flags."""
    spec = CRM_ENTITIES[entity]
    stage_field = spec.get("stage")
    old_stage = data.get(stage_field) if stage_field else None
    for name, value in fields.items():
        if spec["fields"].get(name, ("",))[0] == "crm_multifield":
            merged = _merge_multi(ctx.portal, name, data.get(name) or [], value)
            if merged:
                data[name] = merged
            else:
                data.pop(name, None)
        else:
            data[name] = value
    if "MODIFY_BY_ID" in spec["fields"]:
        data.update(MODIFY_BY_ID=str(ctx.user_id), DATE_MODIFY=stamp)
    if stage_field and (creating or data.get(stage_field) != old_stage):
        data.update(MOVED_BY_ID=str(ctx.user_id), MOVED_TIME=stamp)
        semantic = spec["semantic"].get(str(data.get(stage_field)), "P")
        data[f"{'STATUS' if entity == 'lead' else 'STAGE'}_SEMANTIC_ID"] = semantic
        if entity == "lead":
            data["DATE_CLOSED"] = stamp if semantic != "P" else ""
        if entity == "deal":
            data["CLOSED"] = "N" if semantic == "P" else "Y"
    if "ADDRESS_LOC_ADDR_ID" in spec["fields"] and data.get("ADDRESS_LOC_ADDR_ID") is None and any(
            data.get(k) for k in spec["fields"] if k.startswith("ADDRESS") and k != "ADDRESS_LOC_ADDR_ID"):
        # an address is kept by the location module; the record refers to it
        data["ADDRESS_LOC_ADDR_ID"] = str(next_ids(portal=ctx.portal, entity="location_address", count=1)[0])
    if "HAS_PHONE" in spec["fields"]:
        data["HAS_PHONE"] = "Y" if data.get("PHONE") else "N"
        data["HAS_EMAIL"] = "Y" if data.get("EMAIL") else "N"
        data["HAS_IMOL"] = "Y" if any(i.get("VALUE_TYPE") == "OPENLINE" for i in data.get("IM") or []) else "N"
    return data


def _crm_id(params: dict) -> int:
    record_id = _positive_int(_param(params, "id"))
    if record_id is None:
        raise SandboxError("", "ID is not defined or invalid.", status=400)
    return record_id


def _crm_not_found() -> SandboxError:
    # As documented for crm.lead.get (samples/error_crm_lead_get_not_found.json): empty code.
    return SandboxError("", "Not found", status=400)


def crm_view(entity: str, row: dict, select: list[str] | None, *, with_multi: bool) -> dict:
    """A record as the portal shows it: documented fields in order, then `UF_*`. `get`
    (`with_multi`) shows custom fields and the non-empty multi-fields; `list` shows them only
    when selected (`UF_*`, `PHONE`, ...)."""
    spec = CRM_ENTITIES[entity]["fields"]
    multi = {k for k, (t, _) in spec.items() if t == "crm_multifield"}
    custom = sorted(k for k in row if k.startswith("UF_"))
    if not select:
        # list: "*" (no custom, no multi-fields); get: everything the record has
        wanted = {k for k in spec if k not in multi}
        if with_multi:
            wanted |= multi | set(custom)
    else:
        wanted = {"ID"}
        for item in (s.upper() for s in select):
            if item == "*":
                wanted |= {k for k in spec if k not in multi}
            elif item == "UF_*":
                wanted |= set(custom)
            else:
                wanted.add(item)
    out = {}
    for key in [*spec, *custom]:
        if key not in wanted:
            continue
        if key in multi:
            if row.get(key):
                out[key] = row[key]
            continue
        out[key] = row.get(key)
    return out


def crm_handlers(entity: str, on_change: Callable | None = None) -> dict[str, Callable[[Ctx, dict], Outcome]]:
    """The six methods of one entity. `on_change(ctx, entity, verb, record_id)` is told about
    every add/update/delete after it was stored (events)."""
    spec = CRM_ENTITIES[entity]

    def notify(ctx: Ctx, verb: str, record_id: int) -> None:
        if on_change is not None:
            on_change(ctx, entity, verb, record_id)

    def add(ctx: Ctx, params: dict) -> Outcome:
        fields = crm_clean_fields(entity, _param(params, "fields"), creating=True)
        stamp = iso(clock.now())
        user = str(ctx.user_id)

        def build(new_id: int) -> dict:
            data = {name: None for name, (ftype, _) in spec["fields"].items() if ftype != "crm_multifield"}
            data.update(spec["defaults"])
            data.update({"ID": str(new_id), "ASSIGNED_BY_ID": user, "CREATED_BY_ID": user, "DATE_CREATE": stamp})
            if "LAST_ACTIVITY_BY" in spec["fields"]:
                data.update(LAST_ACTIVITY_BY=user, LAST_ACTIVITY_TIME=stamp)
            return _apply(entity, ctx, data, fields, stamp, creating=True)

        new_id, _ = record_create(portal=ctx.portal, entity=entity, build=build)
        notify(ctx, "add", new_id)
        return Outcome(new_id)

    def get(ctx: Ctx, params: dict) -> Outcome:
        row = record_get(portal=ctx.portal, entity=entity, record_id=_crm_id(params))
        if row is None:
            raise _crm_not_found()
        return Outcome(crm_view(entity, row, None, with_multi=True))

    def update(ctx: Ctx, params: dict) -> Outcome:
        record_id = _crm_id(params)
        fields = crm_clean_fields(entity, _param(params, "fields"), creating=False)
        stamp = iso(clock.now())

        def apply(data: dict) -> dict:
            return _apply(entity, ctx, data, fields, stamp, creating=False)

        if record_update(portal=ctx.portal, entity=entity, record_id=record_id, apply=apply) is None:
            raise _crm_not_found()
        notify(ctx, "update", record_id)
        return Outcome(True)

    def delete(ctx: Ctx, params: dict) -> Outcome:
        record_id = _crm_id(params)
        if not record_delete(portal=ctx.portal, entity=entity, record_id=record_id):
            raise _crm_not_found()
        notify(ctx, "delete", record_id)
        return Outcome(True)

    def list_(ctx: Ctx, params: dict) -> Outcome:
        conditions = parse_v2_filter(_param(params, "filter"))
        order = parse_v2_order(_param(params, "order"))
        select = parse_v2_select(_param(params, "select"))
        offset, count = parse_start(params)
        rows, total = record_query(portal=ctx.portal, entity=entity, conditions=conditions, order=order,
                                   offset=offset, count=count)
        total, nxt = page(offset, count, total, len(rows))
        return Outcome([crm_view(entity, r, select, with_multi=False) for r in rows], total=total, next=nxt)

    def fields(ctx: Ctx, params: dict) -> Outcome:
        out = {}
        for name, (ftype, flags) in spec["fields"].items():
            out[name] = {
                "type": ftype,
                "isRequired": "q" in flags,
                "isReadOnly": "r" in flags,
                "isImmutable": "i" in flags,
                "isMultiple": "m" in flags,
                "isDynamic": False,
                "title": name.replace("_", " ").title(),
            }
        return Outcome(out)

    return {"add": add, "get": get, "update": update, "delete": delete, "list": list_, "fields": fields}
