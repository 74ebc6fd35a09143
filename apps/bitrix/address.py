"""Where a call goes (FACTS §1).

- webhook: `<base>/rest/<user>/<code>/<method>`;
- OAuth: `<base>/rest/<method>`, with `auth` in the JSON body;
- REST 3.0 adds `/api/` after `/rest/`. A method documented only for REST 3.0
  (`apps.policy.catalog`) goes there by default.

`method_path` is the method name as it goes into the URL path; it is stricter than, and not to be
confused with, `apps.policy.normalize.normalize_method` (the policy's lookup key).
"""

from __future__ import annotations

import logging
import re

from apps.policy.catalog import lookup

from .errors import InvalidCall

logger = logging.getLogger(__name__)

_METHOD_NAME = re.compile(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*")


def method_path(method: str) -> str:
    """The name as sent: trimmed, without a `.json` suffix; refused (InvalidCall) unless it is a
    plain dotted name, because it goes into the URL path."""
    if not isinstance(method, str):
        raise InvalidCall("INVALID_METHOD", "The method name must be a string.")
    name = method.strip()
    if name.lower().endswith(".json"):
        name = name[: -len(".json")]
    if not _METHOD_NAME.fullmatch(name) or len(name) > 128:
        raise InvalidCall("INVALID_METHOD", "The method name is not a valid Bitrix24 method name.")
    return name


def is_rest3_only(method: str) -> bool:
    """True for a method documented only for REST 3.0 (v2 if the catalog does not know it)."""
    try:
        info = lookup(method)
    except Exception:  # noqa: BLE001 - the catalog is advisory here; v2 is the safe default
        logger.warning("method catalog lookup failed for %s", method, exc_info=True)
        return False
    return info is not None and info.rest3 and not info.v2


def build_url(*, base_url: str, method: str, rest3: bool, webhook: tuple[str, str] | None) -> str:
    """The address of a call. Contains the webhook code: never log it."""
    root = base_url.rstrip("/") + "/rest/" + ("api/" if rest3 else "")
    if webhook is not None:
        user_id, code = webhook
        return f"{root}{user_id}/{code}/{method}"
    return f"{root}{method}"
