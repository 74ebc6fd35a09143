"""Reading the portal's answers: the JSON envelope of a call or a batch, and the error it carries.

Pure functions (no HTTP, no database), tested against shared/bitrix24/samples:

- `decode_body` turns the raw body into JSON, or raises OutcomeUnknown if it is not JSON;
- `error_from_body` finds the error of a v2, REST 3.0 or OAuth-server answer and maps it to its
  class (`apps.bitrix.errors.classify_error`), or returns None for a success;
- `call_result` / `batch_result` unpack a success into CallResult / BatchResult.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .errors import BitrixError, OutcomeUnknown, PortalError, classify_error


@dataclass
class CallResult:
    method: str
    result: Any
    total: int | None = None
    next: int | None = None
    time: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict)
    http_status: int = 200


@dataclass
class BatchResult:
    results: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)  # name -> {"error": code, "error_description": text}
    totals: dict = field(default_factory=dict)
    nexts: dict = field(default_factory=dict)
    times: dict = field(default_factory=dict)
    time: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict)


def decode_body(http_status: int, content: bytes, *, method: str | None = None) -> Any:
    """The JSON document of an answer, or OutcomeUnknown if it is not JSON."""
    try:
        return json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise OutcomeUnknown(
            "ERROR_UNPARSEABLE_ANSWER",
            f"The portal answered HTTP {http_status} with a body that is not JSON.",
            http_status=http_status,
            method=method,
        ) from None


def error_from_body(http_status: int, body: Any, *, method: str | None = None) -> BitrixError | None:
    """The error an answer carries (v2, REST 3.0 or OAuth server shape), or None on success."""
    if isinstance(body, dict) and "error" in body:
        err = body["error"]
        validation = None
        if isinstance(err, dict):  # REST 3.0
            code = str(err.get("code") or f"HTTP_{http_status}")
            description = str(err.get("message") or "")
            validation = err.get("validation") or None
        else:
            code = str(err or f"HTTP_{http_status}")
            description = str(body.get("error_description") or "")
        cls = classify_error(http_status, code)
        kwargs = {"http_status": http_status, "method": method}
        if issubclass(cls, PortalError) and validation:
            kwargs["validation"] = validation
        return cls(code, description, **kwargs)
    if http_status >= 400 or not isinstance(body, dict) or "result" not in body:
        cls = classify_error(http_status, None)
        if http_status < 400:
            cls = OutcomeUnknown
        return cls(
            "ERROR_UNEXPECTED_ANSWER" if http_status < 400 else f"HTTP_{http_status}",
            f"The portal answered HTTP {http_status} without a result.",
            http_status=http_status,
            method=method,
        )
    return None


def call_result(body: dict, *, method: str, http_status: int = 200) -> CallResult:
    return CallResult(
        method=method,
        result=body.get("result"),
        total=_int_or_none(body.get("total")),
        next=_int_or_none(body.get("next")),
        time=_time_of(body),
        raw=body,
        http_status=http_status,
    )


def batch_result(body: dict) -> BatchResult:
    inner = body.get("result") if isinstance(body.get("result"), dict) else {}
    errors = {}
    for name, err in _as_map(inner.get("result_error")).items():
        if isinstance(err, dict):
            errors[name] = {
                "error": str(err.get("error", "")),
                "error_description": str(err.get("error_description", "")),
            }
        else:
            errors[name] = {"error": str(err), "error_description": ""}
    return BatchResult(
        results=_as_map(inner.get("result")),
        errors=errors,
        totals={k: _int_or_none(v) for k, v in _as_map(inner.get("result_total")).items()},
        nexts={k: _int_or_none(v) for k, v in _as_map(inner.get("result_next")).items()},
        times=_as_map(inner.get("result_time")),
        time=_time_of(body),
        raw=body,
    )


def _time_of(body: dict) -> dict:
    return body.get("time") if isinstance(body.get("time"), dict) else {}


def _as_map(value) -> dict:
    """Batch sections: an empty one is `[]`, a list result is indexed by position."""
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    return {}


def _int_or_none(value) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None
