"""A plan in human terms: one sentence per step, its parameters as rows, batch sub-commands
decoded into the same form, references between steps named, and (when a pre-image was read)
each changed field's old and new value.

Pure: steps and previews in, plain data out; templates render it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from apps.plans.choices import PlanStatus, Risk
from apps.policy.batchparse import parse_batch
from apps.policy.errors import PolicyForbidden, PolicyInputError

from . import entities

_REFERENCE = re.compile(r"\$result\[([A-Za-z0-9_]+)\]")

STATUS_WORDS = dict(PlanStatus.choices)
RISK_WORDS = dict(Risk.choices)


@dataclass
class Change:
    field: str
    before: Any
    after: Any
    known: bool  # False: the entity has no such field (the portal ignores or refuses it)
    changed: bool


@dataclass
class StepView:
    name: str
    method: str
    sentence: str
    rows: list[tuple[str, str]]
    references: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    commands: list[StepView] = field(default_factory=list)  # a batch's sub-commands
    note: str = ""


def short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def quoted(value: Any) -> str:
    if value is None or value == "":
        return "(empty)"
    return f"'{short(value)}'" if isinstance(value, str) else short(value)


def flatten(params: Any, prefix: str = "") -> list[tuple[str, str]]:
    """`{"fields": {"TITLE": "x"}}` → `[("fields.TITLE", "x")]`, values as short text."""
    if isinstance(params, dict) and params:
        rows: list[tuple[str, str]] = []
        for key, value in params.items():
            rows.extend(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return rows
    if isinstance(params, list) and params and all(isinstance(v, dict) for v in params):
        rows = []
        for index, value in enumerate(params):
            rows.extend(flatten(value, f"{prefix}[{index}]"))
        return rows
    return [(prefix or "(params)", short(params, 200))]


def references(params: Any) -> list[str]:
    text = json.dumps(params, ensure_ascii=False)
    return sorted(set(_REFERENCE.findall(text)))


def label(entity: entities.Entity, record: dict | None) -> str:
    if not record:
        return ""
    parts = [str(entities.field_value(entity, record, name)[0] or "") for name in entity.label]
    text = " ".join(p for p in parts if p).strip()
    return f" '{short(text)}'" if text else ""


def money(entity: entities.Entity, record: dict | None) -> str:
    if not record or not entity.amount:
        return ""
    amount, _ = entities.field_value(entity, record, entity.amount[0])
    currency, _ = entities.field_value(entity, record, entity.amount[1])
    try:
        number = float(amount)
    except (TypeError, ValueError):
        return ""
    text = f"{number:,.2f}".removesuffix(".00")
    return f", {text} {currency or ''}".rstrip()


def owner(entity: entities.Entity, record: dict | None) -> str:
    if not record or not entity.owner:
        return ""
    value, known = entities.field_value(entity, record, entity.owner)
    return f", owner user #{value}" if known and value not in (None, "", 0, "0") else ""


def changes_for(entity: entities.Entity, fields: dict, record: dict | None) -> list[Change]:
    out = []
    for name, after in fields.items():
        if record is None:
            out.append(Change(name, None, after, True, True))
            continue
        before, known = entities.field_value(entity, record, name)
        out.append(Change(name, before, after, known, not known or str(before) != str(after)))
    return out


def sentence_for(method: str, params: Any, preview: dict | None = None) -> tuple[str, list[Change]]:
    """One sentence for one call, and the field changes when it updates a known entity."""
    entity, verb, prefix = entities.split(method)
    record = (preview or {}).get("before")
    if entity is None:
        kind = entities.VERBS.get(verb)
        if kind == "read":
            return f"Read with {method}", []
        return f"Call {method}", []
    params = params if isinstance(params, dict) else {}
    key = entities.record_key(entity, params)
    ident = f" #{key[entity.read_id_param]}" if key else " (id from an earlier step)" \
        if references(params.get(entity.id_param)) else ""
    fields = params.get(entity.fields_param) if isinstance(params.get(entity.fields_param), dict) else {}
    if verb == "update":
        changes = changes_for(entity, fields, record)
        shown = [c for c in changes if c.changed] or changes
        parts = []
        for c in shown[:3]:
            if record is None:
                parts.append(f"set {c.field} to {quoted(c.after)}")
            elif not c.known:
                parts.append(f"{c.field} (no such field) → {quoted(c.after)}")
            else:
                parts.append(f"{c.field} {quoted(c.before)} → {quoted(c.after)}")
        more = f" and {len(shown) - 3} more" if len(shown) > 3 else ""
        return f"Update {entity.noun}{ident}{label(entity, record)}: {', '.join(parts)}{more}", changes
    if verb == "delete":
        return (f"Delete {entity.noun}{ident}{label(entity, record)}{money(entity, record)}"
                f"{owner(entity, record)}"), []
    if verb == "add":
        title = label(entity, {k: v for k, v in fields.items()})
        count = len(fields)
        return f"Create a {entity.noun}{title} with {count} field{'s' if count != 1 else ''}", []
    if verb == "get":
        return f"Read {entity.noun}{ident}", []
    if verb == "list":
        return f"List {entity.noun}s", []
    return f"Call {method} on {entity.noun}{ident}", []


def step_view(step: dict, preview: dict | None = None) -> StepView:
    method, params = step.get("method", ""), step.get("params") or {}
    view = StepView(name=step.get("name", ""), method=method, sentence="", rows=flatten(params),
                    references=references(params))
    if method == "batch":
        try:
            parsed = parse_batch(params)
        except (PolicyInputError, PolicyForbidden) as exc:
            view.sentence, view.note = "Run a batch", f"Cannot decode: {exc}"
            return view
        view.commands = [
            step_view({"name": c.key, "method": c.method, "params": c.params}) for c in parsed.commands
        ]
        halt = ", stopping at the first error" if parsed.halt else ""
        view.sentence = f"Run a batch of {len(view.commands)} command{'s' if len(view.commands) != 1 else ''}{halt}"
        return view
    view.sentence, view.changes = sentence_for(method, params, preview)
    if view.references:
        view.note = "Uses the result of step " + ", ".join(f"'{r}'" for r in view.references)
    if preview and preview.get("error"):
        view.note = (view.note + ". " if view.note else "") + f"Could not read the record: {preview['error']}"
    return view


def plan_views(steps: list[dict], previews: dict[str, dict] | None = None) -> list[StepView]:
    previews = previews or {}
    return [step_view(step, previews.get(step.get("name", ""))) for step in steps]


def summary(steps: list[dict], previews: dict[str, dict] | None = None) -> str:
    """The one line an inbox row shows."""
    views = plan_views(steps, previews)
    if not views:
        return ""
    first = views[0].sentence
    return first if len(views) == 1 else f"{first} (+{len(views) - 1} more step{'s' if len(views) > 2 else ''})"
