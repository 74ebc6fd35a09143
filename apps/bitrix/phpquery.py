"""PHP `http_build_query` encoding, for the `method?query` strings of a v2 `batch` command.

- nested dicts and lists become bracketed keys: `fields[TITLE]=x`, `select[0]=ID`;
- `True`/`False` become `1`/`0`, `None` is left out (as PHP does);
- an empty list or dict is left out too (PHP sends nothing for an empty array);
- values are percent-encoded (space as `+`, PHP_QUERY_RFC1738), except batch references
  `$result[cmd][FIELD]...` (also `$result_total`, `$result_next`, `$result_error`), which stay
  literal so the portal can substitute them;
- brackets in keys stay literal, the rest of a key is encoded.

In a JSON body the `cmd` strings are sent as they are (FACTS §4): no second encoding.
"""

from __future__ import annotations

import re
from urllib.parse import quote_plus

_REFERENCE = re.compile(r"\$result(?:_error|_total|_next|_time)?(?:\[[^\[\]]*\])+")


def _encode_key(key: str) -> str:
    return quote_plus(key, safe="[]")


def _encode_value(value: str) -> str:
    out, pos = [], 0
    for match in _REFERENCE.finditer(value):
        out.append(quote_plus(value[pos : match.start()], safe=""))
        out.append(match.group(0))
        pos = match.end()
    out.append(quote_plus(value[pos:], safe=""))
    return "".join(out)


def _scalar(value) -> str | None:
    if value is None:
        return None
    if value is True:
        return "1"
    if value is False:
        return "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else repr(value)
    return str(value)


def flatten(params, prefix: str = "") -> list[tuple[str, str]]:
    """(key, value) pairs, unencoded, in PHP bracket form."""
    pairs: list[tuple[str, str]] = []
    if isinstance(params, dict):
        items = params.items()
    elif isinstance(params, (list, tuple)):
        items = enumerate(params)
    else:
        raise TypeError("params must be a dict or a list")
    for key, value in items:
        name = f"{prefix}[{key}]" if prefix else str(key)
        if isinstance(value, (dict, list, tuple)):
            pairs.extend(flatten(value, name))
        else:
            scalar = _scalar(value)
            if scalar is not None:
                pairs.append((name, scalar))
    return pairs


def http_build_query(params: dict | list) -> str:
    return "&".join(f"{_encode_key(k)}={_encode_value(v)}" for k, v in flatten(params))


def batch_command(method: str, params: dict | list | None) -> str:
    """`method?query` for one batch command (just `method` without parameters)."""
    query = http_build_query(params) if params else ""
    return f"{method}?{query}" if query else method
