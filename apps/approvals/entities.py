"""Which Bitrix24 records a call changes, and how to read them: data, not code per entity.

A write method `<prefix>.<verb>` (`crm.lead.update`, `tasks.task.delete`, `crm.item.update`) maps
to the entity under `<prefix>`: its noun, the read method that returns the record as it is now,
where the id (and any other key such as a smart process's `entityTypeId`) sits in the params,
where the record sits in the read answer, which fields name it to a person, and the case its
read answer uses for field names (`tasks.task.get` and `crm.item.get` answer in camelCase while
`tasks.task.update` takes `TITLE`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Entity:
    noun: str
    read: str
    id_param: str  # where the record id sits in the write's params
    read_id_param: str  # and in the read's params
    key_params: tuple[str, ...] = ()  # other params that identify the record (both calls)
    result_path: tuple[str, ...] = ()  # where the record sits in the read's result
    label: tuple[str, ...] = ("TITLE",)
    amount: tuple[str, str] | None = None  # (amount field, currency field)
    owner: str | None = None
    camel_case_reads: bool = False
    fields_param: str = "fields"


ENTITIES: dict[str, Entity] = {
    "crm.lead": Entity("lead", "crm.lead.get", "id", "id", amount=("OPPORTUNITY", "CURRENCY_ID"),
                       owner="ASSIGNED_BY_ID"),
    "crm.deal": Entity("deal", "crm.deal.get", "id", "id", amount=("OPPORTUNITY", "CURRENCY_ID"),
                       owner="ASSIGNED_BY_ID"),
    "crm.contact": Entity("contact", "crm.contact.get", "id", "id", label=("NAME", "LAST_NAME"),
                          owner="ASSIGNED_BY_ID"),
    "crm.company": Entity("company", "crm.company.get", "id", "id", owner="ASSIGNED_BY_ID"),
    "crm.quote": Entity("quote", "crm.quote.get", "id", "id", amount=("OPPORTUNITY", "CURRENCY_ID"),
                        owner="ASSIGNED_BY_ID"),
    "crm.item": Entity("item", "crm.item.get", "id", "id", key_params=("entityTypeId",), result_path=("item",),
                       label=("title",), amount=("opportunity", "currencyId"), owner="assignedById",
                       camel_case_reads=True),
    "tasks.task": Entity("task", "tasks.task.get", "taskId", "taskId", result_path=("task",), label=("title",),
                         owner="responsibleId", camel_case_reads=True),
}

VERBS = {"add": "create", "update": "update", "delete": "delete", "get": "read", "list": "read"}


def split(method: str) -> tuple[Entity | None, str, str]:
    """(entity or None, verb, prefix) for a normalised method name."""
    prefix, _, verb = method.rpartition(".")
    return ENTITIES.get(prefix), verb, prefix


def camel(name: str) -> str:
    """`RESPONSIBLE_ID` → `responsibleId`; a name already in camelCase is kept."""
    if "_" not in name and not name.isupper():
        return name
    head, *rest = name.lower().split("_")
    return head + "".join(part.capitalize() for part in rest)


_ID = re.compile(r"^[1-9][0-9]{0,18}$")


def record_key(entity: Entity, params: dict) -> dict | None:
    """The read call's params for the record a write targets, or None when it cannot be known
    before running (a `$result[...]` reference, a missing or odd id)."""
    if not isinstance(params, dict):
        return None
    raw = params.get(entity.id_param)
    if raw is None and entity.id_param != entity.id_param.upper():
        raw = params.get(entity.id_param.upper())
    if isinstance(raw, bool) or raw is None or not _ID.match(str(raw)):
        return None
    key = {entity.read_id_param: int(raw)}
    for name in entity.key_params:
        value = params.get(name)
        if value is None or isinstance(value, bool) or not _ID.match(str(value)):
            return None
        key[name] = int(value)
    return key


def record_from(entity: Entity, result) -> dict | None:
    for part in entity.result_path:
        result = result.get(part) if isinstance(result, dict) else None
    return result if isinstance(result, dict) else None


def field_value(entity: Entity, record: dict, name: str):
    """The value of `name` (as the write spells it) in a record as the read returns it, and
    whether the entity has that field at all."""
    for candidate in (name, camel(name) if entity.camel_case_reads else name.upper()):
        if candidate in record:
            return record[candidate], True
    return None, False
