"""Parsing `batch` parameters into commands the policy can check one by one.

REST v2 (`/rest/batch`, FACTS §4): `{"cmd": {key: "method?query"} | ["method?query", ...],
"halt": 0|1}`. Each command string is split at its first `?`; the left part is a method name
(normalised like any top-level method), the right part a PHP `http_build_query` string that the
portal reads with `parse_str` (`fields[TITLE]=x&select[0]=ID&filter[>ID]=5`). In a JSON body the
strings are not extra-encoded, so they are decoded exactly once here.

REST 3.0 (`/rest/api/batch`): the body is a JSON array `[{"method": ..., "query": {...}}, ...]`.
A step targets it by giving the `batch` method a *list* as its params.

Refused, always (raised, never returned):
- `PolicyForbidden` (403): a `batch` inside a batch (the portal refuses it too, since rest 24.0.0),
  a file upload or download (a name segment after the first starting with `upload`/`download`,
  e.g. `disk.folder.uploadFile`, `catalog.product.download`; the portal refuses those in a batch
  too), a `$result[...]` reference in a method position (a method chosen at run time cannot be
  checked);
- `PolicyInputError` (400, `field` names the place): missing or empty `cmd`, more than 50
  commands, keys that are not non-empty strings, commands that are not strings or are empty,
  undecodable percent-encoding, bad method names, unknown top-level keys, a bad `halt`, query
  strings with more variables or deeper nesting than we are prepared to mirror PHP on, and a
  command whose own parameters carry a batch control key (`cmd`, `halt`, `auth`, in any case:
  `crm.lead.list?x=1&cmd[b]=im.message.add`): no legitimate call needs them, and the portal
  may read them as the batch's own (`field` names the key).

Where PHP would silently drop input (more than `max_input_vars` variables, nesting deeper than
`max_input_nesting_level`), we refuse instead, so the parameters we check are never fewer than the
parameters the portal sees.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import PolicyForbidden, PolicyInputError
from .normalize import normalize_method, percent_decode

MAX_BATCH_COMMANDS = 50
MAX_QUERY_VARS = 1000
MAX_QUERY_DEPTH = 32
MAX_KEY_LENGTH = 128
BATCH_METHOD = "batch"
V2_KEYS = frozenset({"cmd", "halt"})
# Keys the portal's batch reads for itself (and `auth`, its credential): never a command's own.
CONTROL_KEYS = frozenset({"cmd", "halt", "auth"})
REST3_ITEM_KEYS = frozenset({"method", "query"})
# The portal refuses file uploads and downloads inside a batch (FACTS §4, 405): so do we.
FILE_TRANSFER_PREFIXES = ("upload", "download")

_PHP_INT = re.compile(r"(?:0|-?[1-9][0-9]{0,17})")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class BatchCommand:
    key: str  # the cmd key (v2) or the array index as a string
    method: str  # normalised
    params: Any = field(default_factory=dict)  # dict (parsed query / 3.0 query object)
    query: str = ""  # v2 only: the raw query string, exactly as given

    @property
    def command(self) -> str:
        """The v2 command string to send: the normalised method and the query as given."""
        return f"{self.method}?{self.query}" if self.query else self.method


@dataclass(frozen=True)
class ParsedBatch:
    form: str  # "v2" | "rest3"
    commands: tuple[BatchCommand, ...]
    halt: bool = False
    cmd_is_list: bool = False  # v2: `cmd` was given as an array

    def canonical_params(self) -> Any:
        """The params to send: the same commands and queries in the same form, with every method
        name in its normalised spelling (so the portal runs exactly the names that were checked)."""
        if self.form == "rest3":
            return [{"method": c.method, "query": c.params} for c in self.commands]
        cmd: Any = [c.command for c in self.commands] if self.cmd_is_list else {c.key: c.command for c in self.commands}
        return {"cmd": cmd, "halt": 1 if self.halt else 0}


# --------------------------------------------------------------------------- PHP parse_str


def _php_key(segment: str) -> int | str:
    return int(segment) if _PHP_INT.fullmatch(segment) else segment


def _split_name(name: str) -> tuple[str, list[str]] | None:
    """PHP's reading of a variable name: the base (spaces and dots made `_`), then the `[...]`
    indices (`""` for `[]`). None if PHP would ignore the variable (empty base)."""
    name = name.lstrip(" ")
    bracket = name.find("[")
    if bracket <= 0:
        if bracket == 0 or not name:
            return None
        return name.replace(" ", "_").replace(".", "_"), []
    base = name[:bracket].replace(" ", "_").replace(".", "_")
    rest = name[bracket:]
    if "]" not in rest:  # an unmatched first "[" is not an index: PHP turns it into "_"
        return base + "_" + rest[1:], []
    indices: list[str] = []
    pos = 0
    while pos < len(rest) and rest[pos] == "[":
        close = rest.find("]", pos + 1)
        if close < 0:
            break  # PHP ignores an unterminated later index
        indices.append(rest[pos + 1 : close])
        pos = close + 1
    return base, indices


def _assign(target: dict, base: str, indices: list[str], value: str) -> None:
    key: int | str = _php_key(base)
    container = target
    for index in indices:
        child = container.get(key)
        if not isinstance(child, dict):
            child = {}
            container[key] = child
        container = child
        if index == "":
            ints = [k for k in container if isinstance(k, int)]
            key = max(ints) + 1 if ints else 0
        else:
            key = _php_key(index)
    container[key] = value


def _to_json(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    keys = list(value)
    if keys == list(range(len(keys))):
        return [_to_json(v) for v in value.values()]
    return {str(k): _to_json(v) for k, v in value.items()}


def parse_php_query(query: str, *, field: str = "params") -> dict[str, Any]:
    """Parse a PHP `http_build_query` string the way `parse_str` does, into nested dicts and
    lists (a PHP array whose keys are exactly 0..n-1 in order becomes a list).

    `+` is a space, `%XX` must be valid and decode to UTF-8, the last of repeated keys wins, `[]`
    appends. Refuses control characters in names, NUL in values, and inputs PHP would truncate.
    """
    if not isinstance(query, str):
        raise PolicyInputError("The query must be a string.", field=field)
    pieces = [piece for piece in query.split("&") if piece]
    if len(pieces) > MAX_QUERY_VARS:
        raise PolicyInputError(f"More than {MAX_QUERY_VARS} parameters in one query.", field=field)
    result: dict = {}
    for piece in pieces:
        raw_name, _, raw_value = piece.partition("=")
        name = percent_decode(raw_name, field=field, plus_as_space=True)
        value = percent_decode(raw_value, field=field, plus_as_space=True)
        if _CONTROL.search(name):
            raise PolicyInputError("A parameter name contains control characters.", field=field)
        if "\x00" in value:
            raise PolicyInputError("A parameter value contains a NUL character.", field=field)
        split = _split_name(name)
        if split is None:
            continue
        base, indices = split
        if len(indices) > MAX_QUERY_DEPTH:
            raise PolicyInputError(f"Parameters nested deeper than {MAX_QUERY_DEPTH} levels.", field=field)
        _assign(result, base, indices, value)
    out = _to_json(result)
    return out if isinstance(out, dict) else {str(i): v for i, v in enumerate(out)}


# --------------------------------------------------------------------------- batch


def _mentions_result(text: str) -> bool:
    """`$result` anywhere in the text, also behind percent-encoding (decoded leniently)."""
    for _ in range(5):
        if "$result" in text.lower():
            return True
        decoded = urllib.parse.unquote(text)
        if decoded == text:
            break
        text = decoded
    return "$result" in text.lower()


def _command_method(raw: str, *, field: str) -> str:
    if _mentions_result(raw):
        raise PolicyForbidden(
            "A $result reference cannot choose the method of a batch command: name the method.", field=field
        )
    method = normalize_method(raw, field=field)
    if method == BATCH_METHOD:
        raise PolicyForbidden("A batch cannot contain another batch.", field=field)
    if any(segment.startswith(FILE_TRANSFER_PREFIXES) for segment in method.split(".")[1:]):
        raise PolicyForbidden("File uploads and downloads cannot run inside a batch; call them directly.", field=field)
    return method


def _check_key(key: object, *, field: str) -> str:
    if not isinstance(key, str):
        raise PolicyInputError("Batch command keys must be strings.", field=field)
    if not key or len(key) > MAX_KEY_LENGTH or _CONTROL.search(key):
        raise PolicyInputError(
            f"Batch command keys must be 1 to {MAX_KEY_LENGTH} characters without control characters.", field=field
        )
    return key


def _parse_halt(value: object, *, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in {"0", "1", "true", "false", "y", "n"}:
        return value.strip().lower() in {"1", "true", "y"}
    raise PolicyInputError("halt must be 0 or 1.", field=field)


def _refuse_control_keys(params: Mapping[str, Any], *, field: str) -> None:
    found = sorted(str(k) for k in params if str(k).strip().lower() in CONTROL_KEYS)
    if found:
        raise PolicyInputError(
            f"A batch command may not carry the batch control parameter {found[0]!r}; "
            f"{', '.join(sorted(CONTROL_KEYS))} belong to the batch itself.",
            field=f"{field}.{found[0]}",
        )


def parse_command(key: str, command: object, *, field: str) -> BatchCommand:
    """One v2 command string `method?query`."""
    if not isinstance(command, str):
        raise PolicyInputError("Every batch command must be a string 'method?query'.", field=field)
    if not command.strip():
        raise PolicyInputError("A batch command is empty.", field=field)
    raw_method, _, query = command.partition("?")
    method = _command_method(raw_method, field=field)
    params = parse_php_query(query, field=field)
    _refuse_control_keys(params, field=field)
    return BatchCommand(key=key, method=method, params=params, query=query)


def _check_count(count: int, *, field: str) -> None:
    if count == 0:
        raise PolicyInputError("The batch has no commands.", field=field)
    if count > MAX_BATCH_COMMANDS:
        raise PolicyInputError(f"A batch may hold at most {MAX_BATCH_COMMANDS} commands, not {count}.", field=field)


def parse_batch_v2(params: Mapping[str, Any], *, field: str = "params") -> ParsedBatch:
    unknown = sorted(str(k) for k in params if k not in V2_KEYS)
    if unknown:
        raise PolicyInputError(f"Unexpected batch parameters: {', '.join(unknown)}.", field=field)
    cmd_field = f"{field}.cmd"
    if "cmd" not in params:
        raise PolicyInputError("A batch needs cmd.", field=cmd_field)
    cmd = params["cmd"]
    if isinstance(cmd, Mapping):
        items = list(cmd.items())
    elif isinstance(cmd, list | tuple):
        items = [(str(i), c) for i, c in enumerate(cmd)]
    else:
        raise PolicyInputError("cmd must be an object or an array of command strings.", field=cmd_field)
    _check_count(len(items), field=cmd_field)
    commands = []
    for key, command in items:
        checked_key = _check_key(key, field=cmd_field)
        commands.append(parse_command(checked_key, command, field=f"{cmd_field}.{checked_key}"))
    halt = _parse_halt(params.get("halt", 0), field=f"{field}.halt")
    return ParsedBatch(form="v2", commands=tuple(commands), halt=halt, cmd_is_list=not isinstance(cmd, Mapping))


def parse_batch_rest3(body: Sequence[Any], *, field: str = "params") -> ParsedBatch:
    _check_count(len(body), field=field)
    commands = []
    for index, item in enumerate(body):
        item_field = f"{field}.{index}"
        if not isinstance(item, Mapping):
            raise PolicyInputError('Every REST 3.0 batch item must be {"method", "query"}.', field=item_field)
        unknown = sorted(str(k) for k in item if k not in REST3_ITEM_KEYS)
        if unknown:
            raise PolicyInputError(f"Unexpected keys in a batch item: {', '.join(unknown)}.", field=item_field)
        if "method" not in item:
            raise PolicyInputError("A batch item needs a method.", field=item_field)
        raw_method = item["method"]
        if not isinstance(raw_method, str) or not raw_method.strip():
            raise PolicyInputError("A batch item's method must be a non-empty string.", field=f"{item_field}.method")
        method = _command_method(raw_method, field=f"{item_field}.method")
        query = item.get("query", {})
        if query is None:
            query = {}
        if not isinstance(query, Mapping):
            raise PolicyInputError("A batch item's query must be an object.", field=f"{item_field}.query")
        _refuse_control_keys(query, field=f"{item_field}.query")
        commands.append(BatchCommand(key=str(index), method=method, params=dict(query)))
    return ParsedBatch(form="rest3", commands=tuple(commands), halt=False)


def parse_batch(params: Any, *, field: str = "params") -> ParsedBatch:
    """Parse `batch` params: a mapping is the v2 form, a list the REST 3.0 form."""
    if isinstance(params, Mapping):
        return parse_batch_v2(params, field=field)
    if isinstance(params, list | tuple):
        return parse_batch_rest3(params, field=field)
    raise PolicyInputError("batch params must be an object (cmd, halt) or a REST 3.0 array.", field=field)
