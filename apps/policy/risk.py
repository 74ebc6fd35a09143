"""Risk of a call: "read" | "write" | "destructive".

Order of evidence (FACTS §13):

1. **The catalog.** A documented method has the catalog's risk. The catalog was built with the
   verb rules below plus hand-made overrides, so it is the better judge for the names it knows.
2. **Verb rules**, for names the catalog does not know. Unknown methods are `write`, or
   `destructive` when a destructive verb matches; they are **never `read`**, whatever their last
   segment says (`vendor.thing.get` is `write`): a read verb in an undocumented name proves
   nothing, and reads are what policies usually let through without a human.
3. **Parameters**, which can only raise the risk, with one documented exception:
   - `user.update` whose `ACTIVE` (top level or inside `fields`, keys in any case) is anything but
     a clear yes (`Y`, `1`, `true`) dismisses the employee: destructive;
   - `event.offline.get` deletes what it returns unless `clear` is 0: destructive, and with
     `clear=0` (every `clear` key, in any case, is `0`, `"0"` or `false`) it is `write`, because it
     still reserves the records and hides them from other readers. This is the one place a
     parameter lowers a catalog risk (destructive to write), never to read;
   - `batch` is the highest risk among its parsed commands (each classified like a top-level
     call with its own parameters). Without parameters it keeps the catalog's `write`.

Invariant (tested over the whole catalog): no method the catalog marks write or destructive is
ever classified read, with or without parameters - except `batch`, whose risk is by design that
of its commands.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .batchparse import BATCH_METHOD, parse_batch
from .catalog import lookup
from .normalize import normalize_method

READ, WRITE, DESTRUCTIVE = "read", "write", "destructive"
RISK_ORDER = {READ: 0, WRITE: 1, DESTRUCTIVE: 2}
RISKS = (READ, WRITE, DESTRUCTIVE)

DESTRUCTIVE_PREFIXES = (
    "delete",
    "remove",
    "unbind",
    "unregister",
    "unset",
    "unsubscribe",
    "terminate",
    "kill",
    "clear",
)
DESTRUCTIVE_SEGMENTS = frozenset(
    {"markdelete", "markdeleted", "reset", "forcecommonscopeforall", "mergebatch", "deletetree"}
)
READ_VERBS = frozenset(
    {
        "get",
        "list",
        "fields",
        "getfields",
        "getlist",
        "search",
        "status",
        "count",
        "types",
        "gettypes",
        "current",
        "info",
        "tail",
        "getbyid",
        "getchildren",
        "getmanifest",
        "getrights",
        "getsettings",
        "getaccess",
        "isenabled",
        "isexists",
        "check",
        "children",
        "statuslist",
        "download",
        "getpreview",
        "getversions",
        "getcontent",
    }
)
# Segments that look like reads but have effects (§13 "overrides to write").
LOOKALIKE_WRITE_SEGMENTS = frozenset({"read", "unread", "getexternallink", "getpublicurl", "getforapp"})
LOOKALIKE_WRITE_METHODS = frozenset(
    {
        "im.notify.read.list",
        "im.dialog.read.all",
        "disk.storage.getforapp",
        "disk.file.getexternallink",
        "disk.folder.getexternallink",
        "crm.invoice.getexternallink",
        "salescenter.payment.getpublicurl",
    }
)

# Unknown names ending like the documented replace-the-whole-set or queue-consuming methods
# (§13 "overrides to destructive") are treated like them.
DESTRUCTIVE_TAILS = (
    ".productrows.set",
    ".productrow.set",
    ".items.set",
    ".fillaccesses",
    ".modify",
    ".setlandingref",
    ".setsiteref",
    ".role.enable",
    ".offline.get",
    ".event.get",
)

_YES = frozenset({"y", "1", "true"})
_CLEAR_OFF = frozenset({"0"})


def max_risk(risks: Iterable[str]) -> str:
    """The highest of `risks` ("read" for none)."""
    return max(risks, key=RISK_ORDER.__getitem__, default=READ)


def verb_risk(method: str) -> str:
    """The §13 verb rules alone (what the catalog was built from), for a normalised name.

    `classify` uses them only to raise an unknown method to destructive; the read answer is
    informative (and tested against the catalog), never trusted for an unknown method."""
    name = method.lower()
    segments = name.split(".")
    if any(seg.startswith(DESTRUCTIVE_PREFIXES) or seg in DESTRUCTIVE_SEGMENTS for seg in segments):
        return DESTRUCTIVE
    if name in LOOKALIKE_WRITE_METHODS or any(seg in LOOKALIKE_WRITE_SEGMENTS for seg in segments):
        return WRITE
    if segments[-1] in READ_VERBS:
        return READ
    return WRITE


def base_risk(method: str) -> str:
    """Risk from the name alone.

    Documented: the catalog's risk (raised to destructive if a destructive verb is in the name,
    which never happens with the shipped catalog but guards a refreshed one). Unknown: `write`,
    or `destructive` by the verb rules or a `DESTRUCTIVE_TAILS` ending. Never `read`."""
    name = method.lower()
    destructive_verb = verb_risk(name) == DESTRUCTIVE
    info = lookup(name)
    if info is not None:
        return DESTRUCTIVE if destructive_verb else info.risk
    if destructive_verb or name.endswith(DESTRUCTIVE_TAILS):
        return DESTRUCTIVE
    return WRITE


def _values_for(params: Mapping[str, Any], key: str) -> list[Any]:
    return [value for k, value in params.items() if isinstance(k, str) and k.strip().lower() == key]


def _is_yes(value: Any) -> bool:
    if value is True:
        return True
    if isinstance(value, int) and not isinstance(value, bool):
        return value == 1
    return isinstance(value, str) and value.strip().lower() in _YES


def _is_clear_off(value: Any) -> bool:
    if value is False:
        return True
    if isinstance(value, int) and not isinstance(value, bool):
        return value == 0
    return isinstance(value, str) and value.strip() in _CLEAR_OFF


def deactivates_user(params: Mapping[str, Any] | None) -> bool:
    """Does a `user.update` call with these params touch ACTIVE with anything but a clear yes?"""
    if not isinstance(params, Mapping):
        return False
    values = _values_for(params, "active")
    for fields in _values_for(params, "fields"):
        if isinstance(fields, Mapping):
            values.extend(_values_for(fields, "active"))
        elif fields is not None:  # `fields` in a shape we cannot read: assume the worst
            return True
    return any(not _is_yes(value) for value in values)


def offline_get_keeps_records(params: Mapping[str, Any] | None) -> bool:
    """True only if every `clear` key (any case) says 0: `event.offline.get` then reserves
    instead of deleting. Missing, 1, "", arrays, `$result` references: False."""
    if not isinstance(params, Mapping):
        return False
    values = _values_for(params, "clear")
    return bool(values) and all(_is_clear_off(value) for value in values)


def param_risk(method: str, params: Mapping[str, Any] | None) -> str | None:
    """The risk the parameters impose on a (normalised, non-batch) method, or None if they do not
    matter. See the module docstring for the rules."""
    name = method.lower()
    if name == "event.offline.get":
        return WRITE if offline_get_keeps_records(params) else DESTRUCTIVE
    if name == "user.update" and deactivates_user(params):
        return DESTRUCTIVE
    return None


def classify(method: str, params: Any = None) -> str:
    """Risk of calling `method` (any accepted spelling) with `params`.

    Raises `PolicyInputError`/`PolicyForbidden` for a bad name or bad `batch` params."""
    name = normalize_method(method)
    if name == BATCH_METHOD:
        if params is None:
            return base_risk(name)
        parsed = parse_batch(params)
        return max_risk(classify(command.method, command.params) for command in parsed.commands)
    risk = base_risk(name)
    by_params = param_risk(name, params)
    if by_params is None:
        return risk
    if name == "event.offline.get":  # the one documented lowering (never below write)
        return by_params
    return max_risk((risk, by_params))
