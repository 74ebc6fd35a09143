"""What never enters an audit entry: secrets, wherever they sit in `data`.

- values under a secret key (`webhook_code`, `access_token`, `client_secret`, `application_token`,
  `auth`, any `*_token`, `*_secret`, `password` ...) become `***`, whatever their type;
- strings anywhere (values and keys) lose webhook codes in REST paths (`/rest/1/<code>/`), secret
  query parameters (`code=`, `auth=`, `access_token=` ...), `Bearer` tokens and `"token": "..."`
  pairs inside embedded JSON text;
- a key named `code` is an error code (`invalid_grant`, `NO_AUTH_FOUND`, 401) and stays readable;
  a `code` whose value does not have that shape (an OAuth authorization code, say) is masked.
"""

import re

MASK = "***"

_SECRET_KEYS = frozenset({
    "webhook_code", "access_token", "refresh_token", "client_secret", "application_token", "auth", "auth_id",
    "refresh_id", "token", "password", "secret", "authorization", "api_key", "oauth_code", "auth_code",
    "authorization_code", "webhook_url", "private_key",
})
_SECRET_SUFFIXES = ("_token", "_secret", "password")
_NOT_SECRET = frozenset({"idempotency_key", "sort_key", "cache_key"})

_ERROR_CODE = re.compile(r"^[A-Za-z]+(?:[_.:-][A-Za-z0-9]+)*$")

_PARAMS = r"auth|access_token|refresh_token|client_secret|code|application_token|auth_id|refresh_id|token|password"
_WEBHOOK_PATH = re.compile(r"(/rest/(?:api/)?\d+/)[^/\s\"'?#]+")
# `name=value` in URLs, form bodies and text, also Bitrix24's form-encoded `auth[application_token]=`.
_QUERY_SECRET = re.compile(rf"((?:^|[?&;\s]|\b)(?:auth(?:\[|%5B))?(?:{_PARAMS})(?:\]|%5D)?=)[^&\s\"'#]*", re.IGNORECASE)
_JSON_SECRET = re.compile(rf"(\"(?:{_PARAMS}|webhook_code|secret)\"\s*:\s*\")(?:[^\"\\]|\\.)*(\")", re.IGNORECASE)
_BEARER = re.compile(r"(\bBearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)


def is_secret_key(key: str) -> bool:
    key = key.lower()
    if key in _NOT_SECRET:
        return False
    return key in _SECRET_KEYS or key.endswith(_SECRET_SUFFIXES)


def scrub_text(text: str) -> str:
    if not text:
        return text
    text = _WEBHOOK_PATH.sub(lambda m: m.group(1) + MASK, text)
    text = _QUERY_SECRET.sub(lambda m: m.group(1) + MASK, text)
    text = _JSON_SECRET.sub(lambda m: m.group(1) + MASK + m.group(2), text)
    return _BEARER.sub(lambda m: m.group(1) + MASK, text)


def _code_value(value):
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, str) and len(value) <= 64 and _ERROR_CODE.match(value):
        return value
    return MASK


def scrub(value):
    """A copy of `value` (JSON-like) with every secret replaced by `***`."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            name = str(key)
            if is_secret_key(name):
                out[scrub_text(name)] = MASK
            elif name.lower() == "code":
                out[name] = _code_value(item)
            else:
                out[scrub_text(name)] = scrub(item)
        return out
    if isinstance(value, list | tuple):
        return [scrub(item) for item in value]
    if isinstance(value, str):
        return scrub_text(value)
    return value
