"""The pure policy decision: grants and steps in, a `Decision` out (house rule 7).

Rules, in order:

1. **Validate**: 1..`max_steps` steps; names unique, `[A-Za-z0-9_]{1,64}`; methods normalised
   (`apps.policy.normalize`); params an object (`batch` also takes the REST 3.0 array); batch
   commands parsed (`apps.policy.batchparse`). Bad input raises `PolicyInputError` (400), the only
   exception `decide` raises for input (a grant that is not a `GrantView` is a programming error:
   TypeError). The fixed-rule refusals of the batch parser (a `batch` inside a batch, a `$result`
   reference as a method) come back as a `deny` decision with the reason, steps as given, risk
   `write`.
2. **Every call is checked**: each top-level step, and each command of a `batch` step exactly like
   a top-level call. The `batch` wrapper itself is not a capability: it is allowed when each of its
   commands is, and its risk is theirs.
3. **Granted** means: some grant's patterns match the normalised method.
4. **Combining grants** (they are additive): among the grants matching a call, the policy for the
   call's risk is the *most permissive non-deny* one (auto < approve < approve2); `deny` only if
   every matching grant denies. An unknown policy string counts as `deny` (fail closed).
5. **The plan's outcome** is the strictest over its calls: deny > approve2 > approve > auto; any
   call no grant covers makes the outcome `not_granted` (it wins over deny: the agent is told
   what to ask for, and `missing` names the built-in packs that would grant each such method).
6. `allowed` is True for auto/approve/approve2; `approvals_required` is 0/1/2 for those, 0
   otherwise; `risk` is the highest risk over all calls.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .batchparse import BATCH_METHOD, parse_batch
from .catalog import lookup
from .errors import PolicyForbidden, PolicyInputError
from .normalize import normalize_method
from .packs import BUILTIN_PACKS, matches_any, packs_for
from .risk import WRITE, classify, max_risk

AUTO, APPROVE, APPROVE2, DENY, NOT_GRANTED = "auto", "approve", "approve2", "deny", "not_granted"
POLICIES = (AUTO, APPROVE, APPROVE2, DENY)
# Strictness, used to combine calls into a plan (higher is stricter).
STRICTNESS = {AUTO: 0, APPROVE: 1, APPROVE2: 2, DENY: 3, NOT_GRANTED: 4}
APPROVALS = {AUTO: 0, APPROVE: 1, APPROVE2: 2}
DEFAULT_MAX_STEPS = 50

_STEP_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")


@dataclass(frozen=True)
class GrantView:
    """One active, unexpired grant of a pack to the agent on the portal."""

    pack: str
    patterns: tuple[str, ...]
    read: str = AUTO
    write: str = APPROVE
    destructive: str = APPROVE2

    @classmethod
    def builtin(cls, pack: str, *, read: str = AUTO, write: str = APPROVE, destructive: str = APPROVE2) -> GrantView:
        """A grant of a built-in pack with its patterns (KeyError for an unknown pack)."""
        return cls(pack, BUILTIN_PACKS[pack].patterns, read, write, destructive)

    def policy_for(self, risk: str) -> str:
        policy = {"read": self.read, "write": self.write, "destructive": self.destructive}[risk]
        return policy if policy in POLICIES else DENY

    def covers(self, method: str) -> bool:
        return matches_any(self.patterns, method)


@dataclass(frozen=True)
class Step:
    name: str
    method: str
    params: Any  # a JSON object; for `batch` also the REST 3.0 array


@dataclass(frozen=True)
class Decision:
    allowed: bool
    outcome: str  # "auto" | "approve" | "approve2" | "deny" | "not_granted"
    risk: str
    approvals_required: int
    reasons: tuple[str, ...]
    steps: tuple[Step, ...]  # normalised method names (batch commands too)
    packs: tuple[str, ...]  # packs that granted the calls, in first-use order
    missing: tuple[dict, ...]  # {"method": m, "packs": [built-in packs that would grant it]}
    checked: tuple[dict, ...]  # {"step", "method", "risk", "pack", "policy"} (+ "command" in a batch)


@dataclass(frozen=True)
class _Resolution:
    policy: str | None  # None: no grant matches
    pack: str | None
    granted_by: tuple[str, ...]


def _resolve(grants: Sequence[GrantView], method: str, risk: str) -> _Resolution:
    matching = [grant for grant in grants if grant.covers(method)]
    if not matching:
        return _Resolution(None, None, ())
    granted_by = tuple(dict.fromkeys(grant.pack for grant in matching))
    allowing = [grant for grant in matching if grant.policy_for(risk) != DENY]
    if not allowing:
        return _Resolution(DENY, matching[0].pack, granted_by)
    best = min(allowing, key=lambda grant: STRICTNESS[grant.policy_for(risk)])
    return _Resolution(best.policy_for(risk), best.pack, granted_by)


def _check_grants(grants: Sequence[GrantView]) -> None:
    for grant in grants:
        if not isinstance(grant, GrantView):
            raise TypeError(f"grants must be GrantView instances, got {type(grant).__name__}")


def _validated_steps(steps: Sequence[Step], max_steps: int) -> list[tuple[Step, Any]]:
    """Normalise each step; returns (normalised step, parsed batch or None)."""
    if isinstance(steps, str | bytes) or not isinstance(steps, Sequence):
        raise PolicyInputError("steps must be a list.", field="steps")
    if not 1 <= len(steps) <= max_steps:
        raise PolicyInputError(f"A plan needs 1 to {max_steps} steps, not {len(steps)}.", field="steps")
    seen: set[str] = set()
    out: list[tuple[Step, Any]] = []
    for index, step in enumerate(steps):
        where = f"steps.{index}"
        if not isinstance(step, Step):
            raise PolicyInputError("Each step needs a name, a method and params.", field=where)
        if not isinstance(step.name, str) or not _STEP_NAME.fullmatch(step.name):
            raise PolicyInputError("Step names are 1 to 64 letters, digits or '_'.", field=f"{where}.name")
        if step.name in seen:
            raise PolicyInputError(f"Step name {step.name!r} is used twice.", field=f"{where}.name")
        seen.add(step.name)
        method = normalize_method(step.method, field=f"{where}.method")
        params = {} if step.params is None else step.params
        parsed = None
        if method == BATCH_METHOD:
            parsed = parse_batch(params, field=f"{where}.params")
            params = parsed.canonical_params()
        elif isinstance(params, Mapping):
            params = dict(params)
        else:
            raise PolicyInputError("params must be an object.", field=f"{where}.params")
        out.append((Step(step.name, method, params), parsed))
    return out


def _refused(steps: Sequence[Step], refusal: PolicyForbidden) -> Decision:
    """A fixed-rule refusal (batch in batch, `$result` as a method): deny, whatever the grants."""
    field = refusal.extra.get("field", "steps")
    return Decision(
        allowed=False,
        outcome=DENY,
        risk=WRITE,
        approvals_required=0,
        reasons=(f"{field}: {refusal.message}",),
        steps=tuple(steps),
        packs=(),
        missing=(),
        checked=(),
    )


def decide(grants: Sequence[GrantView], steps: Sequence[Step], *, max_steps: int = DEFAULT_MAX_STEPS) -> Decision:
    """Decide whether the agent holding `grants` may run `steps`, and with how many approvals."""
    _check_grants(grants)
    try:
        validated = _validated_steps(steps, max_steps)
    except PolicyForbidden as refusal:
        return _refused(steps, refusal)

    # (step name, batch key or None, method, params) for every call that reaches the portal
    calls: list[tuple[str, str | None, str, Any]] = []
    for step, parsed in validated:
        if parsed is None:
            calls.append((step.name, None, step.method, step.params))
        else:
            calls.extend((step.name, command.key, command.method, command.params) for command in parsed.commands)

    checked: list[dict] = []
    reasons: list[str] = []
    missing: dict[str, dict] = {}
    used_packs: list[str] = []
    outcome = AUTO
    risks: list[str] = []
    for step_name, key, method, params in calls:
        risk = classify(method, params)
        risks.append(risk)
        resolution = _resolve(grants, method, risk)
        where = f"step {step_name!r}" + (f" command {key!r}" if key is not None else "")
        entry: dict[str, Any] = {
            "step": step_name,
            "method": method,
            "risk": risk,
            "pack": resolution.pack,
            "policy": resolution.policy,
        }
        if key is not None:
            entry["command"] = key
        checked.append(entry)
        if resolution.policy is None:
            would = packs_for(method)
            missing.setdefault(method, {"method": method, "packs": would})
            hint = f"grant one of: {', '.join(would)}" if would else "no built-in pack covers it; use a custom pack"
            reasons.append(f"{where}: {method} ({risk}) is not granted; {hint}.")
            call_outcome = NOT_GRANTED
        else:
            call_outcome = resolution.policy
            if resolution.policy == DENY:
                reasons.append(f"{where}: {method} ({risk}) is denied by the {risk} policy of {resolution.pack}.")
            else:
                reasons.append(f"{where}: {method} ({risk}) granted by {resolution.pack}: {resolution.policy}.")
                if resolution.pack not in used_packs:
                    used_packs.append(resolution.pack)
        if STRICTNESS[call_outcome] > STRICTNESS[outcome]:
            outcome = call_outcome

    allowed = outcome in APPROVALS
    return Decision(
        allowed=allowed,
        outcome=outcome,
        risk=max_risk(risks),
        approvals_required=APPROVALS.get(outcome, 0),
        reasons=tuple(reasons),
        steps=tuple(step for step, _parsed in validated),
        packs=tuple(used_packs),
        missing=tuple(missing.values()),
        checked=tuple(checked),
    )


def describe_method(grants: Sequence[GrantView], method: str, params: Any = None) -> dict[str, Any]:
    """What `GET /api/v1/methods/<name>` answers. Raises `PolicyInputError` for a bad name.

    For `batch` the risk is that of the given commands (`write` without params), and `granted`
    reflects grants of `batch` itself; use `decide` to check a concrete batch."""
    _check_grants(grants)
    normalized = normalize_method(method)
    info = lookup(normalized)
    risk = classify(normalized, params)
    resolution = _resolve(grants, normalized, risk)
    return {
        "name": info.name if info else normalized,
        "normalized": normalized,
        "known": info is not None,
        "scope": info.scope if info else None,
        "risk": risk,
        "rest3": info.rest3 if info else False,
        "v2": info.v2 if info else False,
        "doc_path": info.doc_path if info else None,
        "packs": packs_for(normalized),
        "granted": resolution.policy is not None,
        "granted_by": list(resolution.granted_by),
        "policy": resolution.policy,
    }
