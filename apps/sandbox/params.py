"""PHP-style parameters: what a Bitrix24 portal sees in `$_REQUEST`.

`php_parse_query("fields[TITLE]=x&select[0]=ID")` gives `{"fields": {"TITLE": "x"}, "select": ["ID"]}`:
nested keys build dicts, `[]` appends, and a nested dict whose keys are exactly "0".."n-1" becomes
a list (that is how PHP's json_encode renders such an array); the top level always stays a dict,
so positional parameters arrive as keys "0", "1", ... `php_build_query` is the inverse
(PHP's `http_build_query`), used for batch commands and by tests.
"""

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, quote_plus

MAX_FIELDS = 5000
MAX_DEPTH = 16

_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_PART_RE = re.compile(r"\[([^\[\]]*)\]")


class ParamsError(ValueError):
    pass


def php_parse_query(query: str) -> dict:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="replace")
    except ValueError:
        raise ParamsError("Too many parameters") from None
    return php_nest(pairs)


def php_nest(pairs: Iterable[tuple[str, str]]) -> dict:
    root: dict = {}
    for count, (raw_key, value) in enumerate(pairs, start=1):
        if count > MAX_FIELDS:
            raise ParamsError("Too many parameters")
        match = _KEY_RE.match(raw_key)
        if not match:
            path = [raw_key]
        else:
            path = [match.group(1), *_PART_RE.findall(match.group(2))]
        if len(path) > MAX_DEPTH:
            raise ParamsError("Parameters are nested too deeply")
        node = root
        for i, part in enumerate(path):
            last = i == len(path) - 1
            if part == "":
                part = str(_next_index(node))
            if last:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
    # The top level stays a dict even when its keys are 0..n-1: positional parameters
    # (`0=123&1[POST_MESSAGE]=hi`) are still named parameters "0", "1" of the request.
    return {k: _listify(v) for k, v in root.items()}


def _next_index(node: dict) -> int:
    ints = [int(k) for k in node if k.isdigit()]
    return max(ints) + 1 if ints else 0


def _listify(value):
    if isinstance(value, dict):
        converted = {k: _listify(v) for k, v in value.items()}
        if converted and list(converted) == [str(i) for i in range(len(converted))]:
            return list(converted.values())
        return converted
    return value


def php_build_query(data: dict, prefix: str | None = None) -> str:
    """PHP's http_build_query (RFC 1738 style: spaces as '+'); booleans as 1/0, None dropped."""
    parts: list[str] = []
    items = data.items() if isinstance(data, dict) else enumerate(data)
    for key, value in items:
        name = f"{prefix}[{key}]" if prefix is not None else str(key)
        if isinstance(value, dict | list | tuple):
            nested = php_build_query(value, name)
            if nested:
                parts.append(nested)
        elif value is None:
            continue
        else:
            if isinstance(value, bool):
                value = int(value)
            parts.append(f"{quote_plus(name, safe='')}={quote_plus(str(value), safe='')}")
    return "&".join(parts)
