"""Method-name normalisation: the one spelling every policy check sees.

Bitrix24 matches method names case-insensitively, ignores a `.json` suffix (`.xml` switches the
answer to XML) and the address may carry percent-encoding. An agent must not be able to slip a
method past the grants by spelling it differently, so every check works on the result of
`normalize_method`, and the executor must send that result, not what the agent typed.

Order of operations (each step is needed for the next to be safe):

1. reject non-strings and absurdly long input;
2. repeatedly trim whitespace and percent-decode until nothing changes (at most
   `MAX_DECODE_ROUNDS` rounds; still changing after that is refused);
3. strip one leading `/`;
4. strip one `.json` suffix (any case); refuse `.xml`, and refuse a name still ending in
   `.json`/`.xml` afterwards (`x.json.json` would otherwise reach the portal as `x`);
5. check the strict ASCII grammar *before* lowercasing (some non-ASCII letters lowercase to ASCII,
   e.g. the Kelvin sign to `k`), then lowercase.
"""

from __future__ import annotations

import re

from .errors import PolicyInputError

MAX_RAW_LENGTH = 4096
MAX_METHOD_LENGTH = 128
MAX_DECODE_ROUNDS = 4

# Letters, digits and `_`, in non-empty segments joined by single dots.
_GRAMMAR = re.compile(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*")
_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def percent_decode(text: str, *, field: str = "method", plus_as_space: bool = False) -> str:
    """Decode `%XX` escapes strictly: a `%` not followed by two hex digits, or bytes that are not
    UTF-8, raise `PolicyInputError` instead of being passed through (PHP would keep them)."""
    if plus_as_space:
        text = text.replace("+", " ")
    if "%" not in text:
        return text
    if _PERCENT.search(text):
        raise PolicyInputError(f"Invalid percent-encoding in {field}.", field=field)
    out = bytearray()
    i = 0
    raw = text.encode("utf-8")
    while i < len(raw):
        byte = raw[i]
        if byte == 0x25:  # "%"
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(byte)
            i += 1
    try:
        return out.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        raise PolicyInputError(f"Percent-encoding in {field} does not decode to UTF-8.", field=field) from None


def normalize_method(raw: object, *, field: str = "method") -> str:
    """Return the canonical (lowercase, undecorated) method name or raise `PolicyInputError`."""
    if not isinstance(raw, str):
        raise PolicyInputError("The method must be a string.", field=field)
    if len(raw) > MAX_RAW_LENGTH:
        raise PolicyInputError("The method name is too long.", field=field)

    text = raw.strip()
    for _round in range(MAX_DECODE_ROUNDS + 1):
        decoded = percent_decode(text, field=field).strip()
        if decoded == text:
            break
        text = decoded
    else:
        raise PolicyInputError("The method name is encoded too many times.", field=field)

    if text.startswith("/"):
        text = text[1:]
    lowered_tail = text[-5:].lower()
    if lowered_tail == ".json":
        text = text[:-5]
    elif text[-4:].lower() == ".xml":
        raise PolicyInputError("Only JSON is supported: drop the .xml suffix.", field=field)
    if text[-5:].lower() == ".json" or text[-4:].lower() == ".xml":
        raise PolicyInputError("The method name carries more than one format suffix.", field=field)

    if not text:
        raise PolicyInputError("The method name is empty.", field=field)
    if "$result" in text.lower():
        raise PolicyInputError("A $result reference cannot stand in a method position.", field=field)
    if _GRAMMAR.fullmatch(text) is None:
        raise PolicyInputError(
            "The method name may contain only letters, digits, '_' and single dots between non-empty segments.",
            field=field,
        )
    if len(text) > MAX_METHOD_LENGTH:
        raise PolicyInputError("The method name is too long.", field=field)
    return text.lower()


def is_valid_method(raw: object) -> bool:
    """True if `normalize_method(raw)` would succeed."""
    try:
        normalize_method(raw)
    except PolicyInputError:
        return False
    return True
