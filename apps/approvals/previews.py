"""Before → after: read the records a plan will change, so approvers (and the agent) see each
field's old and new value.

Which records and how to read them is data (`entities.ENTITIES`). The reads go through the
transport with the portal's own credential and limiter, charged to the portal and never to an
agent's grants; they are reads of records the plan's own writes name.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from apps.bitrix.client import BitrixClient
from apps.bitrix.errors import BitrixError, NotSent

from . import entities
from .models import PlanPreview

PREVIEWED_VERBS = frozenset({"update", "delete"})


def targets(steps: list[dict]) -> dict[str, tuple[entities.Entity, dict]]:
    """Step name → (entity, read params) for every step that changes or deletes a known record."""
    found = {}
    for step in steps:
        entity, verb, _ = entities.split(step.get("method", ""))
        if entity is None or verb not in PREVIEWED_VERBS:
            continue
        key = entities.record_key(entity, step.get("params") or {})
        if key is not None:
            found[step["name"]] = (entity, key)
    return found


def read_records(*, portal, steps: list[dict]) -> dict[str, dict]:
    """Read each target record now. NotSent (the limiter's deferral, a refused call) propagates
    so the caller can retry; any other portal error is recorded against its step."""
    client = BitrixClient(portal)
    out: dict[str, dict] = {}
    for name, (entity, key) in targets(steps).items():
        entry = {"entity": entity.noun, "read": entity.read, "key": key}
        try:
            answer = client.call(entity.read, key)
        except NotSent:
            raise
        except BitrixError as exc:
            entry["error"] = exc.description or exc.code
        else:
            record = entities.record_from(entity, answer.result)
            if record is None:
                entry["error"] = "the portal's answer held no record"
            else:
                entry["before"] = record
        out[name] = entry
    return out


def preview_read(*, plan_id) -> None:
    """Store the plan's pre-images (the worker task's one service call)."""
    from apps.plans.models import Plan

    plan = Plan.objects.select_related("portal").filter(pk=plan_id).first()
    if plan is None or not targets(plan.steps):
        return
    records = read_records(portal=plan.portal, steps=plan.steps)
    with transaction.atomic():
        PlanPreview.objects.update_or_create(plan=plan, defaults={"steps": records, "read_at": timezone.now()})


def preview_schedule(plan) -> bool:
    """On commit of a plan that waits for approvers: read its records in a worker."""
    if not targets(plan.steps):
        return False
    from .tasks import read_preimages

    read_preimages.delay_on_commit(str(plan.pk))
    return True


def preview_of(plan) -> dict[str, dict]:
    """The stored pre-images (uses `plan.preview` when a selector loaded it with the plan)."""
    try:
        return plan.preview.steps
    except PlanPreview.DoesNotExist:
        return {}


def changes(plan, previews: dict[str, dict] | None = None) -> list[dict]:
    """The plan answer's `changes`: per previewed step, the entity, the id and each field's
    `before` and `after` (`exists: false` marks a field the entity does not have)."""
    previews = preview_of(plan) if previews is None else previews
    out = []
    for step in plan.steps:
        entry = previews.get(step["name"])
        if not entry:
            continue
        entity, verb, _ = entities.split(step["method"])
        item = {"step": step["name"], "entity": entry["entity"], "key": entry["key"],
                "action": entities.VERBS.get(verb, verb)}
        if "error" in entry:
            item["error"] = entry["error"]
        elif verb == "update":
            record = entry["before"]
            fields = (step.get("params") or {}).get(entity.fields_param) or {}
            item["fields"] = {}
            for name, after in fields.items():
                before, known = entities.field_value(entity, record, name)
                item["fields"][name] = {"before": before, "after": after, "exists": known}
        else:
            item["before"] = entry["before"]
        out.append(item)
    return out


# --- right before sending: has anything changed since the approvers looked? -------------------

MODIFIED_AT = ("DATE_MODIFY", "dateModify", "updatedTime", "changedDate")


def differences(entity: entities.Entity, step: dict, was: dict, now: dict) -> dict[str, list]:
    """Fields whose value moved between two reads of one record: its modification time, every
    field the step writes and, for a delete, every field it had."""
    _, verb, _ = entities.split(step["method"])
    names = [n for n in MODIFIED_AT if n in was or n in now]
    fields = (step.get("params") or {}).get(entity.fields_param) or {}
    names += list(fields) if verb == "update" else sorted(set(was) | set(now))
    out = {}
    for name in dict.fromkeys(names):
        before, _ = entities.field_value(entity, was, name)
        after, _ = entities.field_value(entity, now, name)
        if before != after:
            out[name] = [before, after]
    return out


def changed_records(plan) -> dict[str, dict]:
    """Re-read every previewed record; step name → {field: [was, now]} for those that changed
    (or can no longer be read). NotSent propagates: the caller retries later."""
    previews = preview_of(plan)
    seen = {name: entry for name, entry in previews.items() if "before" in entry}
    if not seen:
        return {}
    steps = [s for s in plan.steps if s["name"] in seen]
    now = read_records(portal=plan.portal, steps=steps)
    changed = {}
    for step in steps:
        entity, _, _ = entities.split(step["method"])
        fresh = now.get(step["name"], {})
        if "before" not in fresh:
            changed[step["name"]] = {"(record)": ["readable", fresh.get("error", "not found")]}
            continue
        diff = differences(entity, step, seen[step["name"]]["before"], fresh["before"])
        if diff:
            changed[step["name"]] = diff
        previews[step["name"]] = fresh
    if changed:
        PlanPreview.objects.filter(plan_id=plan.pk).update(steps=previews, changed=changed,
                                                           changed_at=timezone.now())
    return changed
