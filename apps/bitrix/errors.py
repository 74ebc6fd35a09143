"""The Bitrix24 error taxonomy: every answer the transport can meet maps to exactly one class.

What a caller (the plan executor) may do with each class:

| class           | meaning                                         | retry?                               |
|-----------------|-------------------------------------------------|--------------------------------------|
| `NotSent`       | the portal refused without running the call, or | yes, for any risk, after             |
|                 | the request never left this process             | `retry_after` seconds                |
| `WaitForReset`  | a `NotSent` with a known reset time             | yes, after `retry_after`             |
|                 | (OPERATION_TIME_LIMIT, a held method)           |                                      |
| `Deferred`      | a `NotSent` by our own limiter or hold: no      | yes, and it is not counted as a try  |
|                 | request was made                                |                                      |
| `OutcomeUnknown`| the call may have run (read timeout, reset after| reads only; a write goes to          |
|                 | sending, 5xx, an answer that is not JSON)       | reconciliation                       |
| `AuthFailed`    | the credential is broken                        | never                                |
| `PortalError`   | the portal answered an application error        | never (fatal for the plan)           |
| `PortalMoved`   | 301/302: the portal changed address             | never (a human updates the portal)   |
| `InvalidCall`   | a `PortalError` raised here before sending (bad | never                                |
|                 | method name, params or batch command)           |                                      |

`OVERLOAD_LIMIT` (503) is a manual block placed by Bitrix24 that only its support lifts
(FACTS §5): waiting does not help, so it is fatal (`OverloadBlocked`, a `PortalError`) rather
than a retry that would sit in the queue for hours. Nothing ran, which `not_sent` records.

`classify_error(http_status, code)` is table driven: the code decides when it is known (codes
are matched exactly first, then case-insensitively), the HTTP status otherwise.
"""

from __future__ import annotations


class BitrixError(Exception):
    """Base of every transport error. Carries no secret: `description` is the portal's text or
    our own, never a URL, token or webhook code."""

    default_code = "BITRIX_ERROR"
    #: True when we know the portal did not run the call.
    not_sent = False

    def __init__(
        self,
        code: str | None = None,
        description: str = "",
        *,
        http_status: int | None = None,
        retry_after: float | None = None,
        method: str | None = None,
    ):
        self.code = code or self.default_code
        self.description = description or ""
        self.http_status = http_status
        self.retry_after = retry_after
        self.method = method
        super().__init__(f"{self.code}: {self.description}" if self.description else self.code)

    def as_dict(self) -> dict:
        data = {"code": self.code, "description": self.description, "http_status": self.http_status}
        if self.retry_after is not None:
            data["retry_after"] = round(self.retry_after, 3)
        return data

    def __repr__(self):
        return f"{type(self).__name__}(code={self.code!r}, http_status={self.http_status!r})"


class NotSent(BitrixError):
    """The call did not run: safe to retry for any risk after `retry_after` seconds."""

    default_code = "NOT_SENT"
    not_sent = True


class WaitForReset(NotSent):
    """OPERATION_TIME_LIMIT (or a method we hold on a portal until its reset time)."""

    default_code = "OPERATION_TIME_LIMIT"


class Deferred(NotSent):
    """Our own limiter or hold deferred the call before it left this process: not a try at the
    portal, so callers do not count it against their retry budget."""

    default_code = "DEFERRED"


class HeldUntilReset(WaitForReset, Deferred):
    """A method we hold on a portal until its operating time resets (no request was made)."""


class OutcomeUnknown(BitrixError):
    """The call may have run on the portal; only reads may be repeated automatically."""

    default_code = "OUTCOME_UNKNOWN"


class AuthFailed(BitrixError):
    """The credential is broken (invalid_grant, rejected webhook, payment required ...)."""

    default_code = "AUTH_FAILED"
    not_sent = True


class PortalError(BitrixError):
    """The portal answered an application error: fatal for the plan, never retried."""

    default_code = "PORTAL_ERROR"

    def __init__(self, *args, validation: list | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.validation = validation or []

    def as_dict(self) -> dict:
        data = super().as_dict()
        if self.validation:
            data["validation"] = self.validation
        return data


class InvalidCall(PortalError):
    """The call was refused here before sending (bad method name, bad batch command)."""

    default_code = "INVALID_CALL"
    not_sent = True


class OverloadBlocked(PortalError):
    """OVERLOAD_LIMIT: REST is blocked for this portal by hand; nothing ran."""

    default_code = "OVERLOAD_LIMIT"
    not_sent = True


class BatchTooLong(PortalError):
    """More than 50 commands in one batch: refused here, before sending."""

    default_code = "ERROR_BATCH_LENGTH_EXCEEDED"
    not_sent = True


class PortalMoved(PortalError):
    """301/302 from the portal. `location` is the new address with any credential masked."""

    default_code = "PORTAL_MOVED"
    not_sent = True

    def __init__(self, *args, location: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.location = location

    def as_dict(self) -> dict:
        return {**super().as_dict(), "location": self.location}


# --- classification ---------------------------------------------------------------------------

#: Every documented code (FACTS §6 system errors, the other errors a client meets, the OAuth
#: server errors, REST 3.0 exceptions) -> its class. The HTTP status in comments is the
#: documented one; the code wins whatever status it came with.
CODE_TABLE: dict[str, type[BitrixError]] = {
    # FACTS §6, system errors
    "INTERNAL_SERVER_ERROR": OutcomeUnknown,  # 500
    "ERROR_UNEXPECTED_ANSWER": OutcomeUnknown,  # 500
    "QUERY_LIMIT_EXCEEDED": NotSent,  # 503
    "ERROR_BATCH_METHOD_NOT_ALLOWED": PortalError,  # 405
    "ERROR_BATCH_LENGTH_EXCEEDED": PortalError,  # 400
    "NO_AUTH_FOUND": AuthFailed,  # 401 (the client refreshes an OAuth token once first)
    "INVALID_REQUEST": PortalError,  # 400, HTTPS required
    "OVERLOAD_LIMIT": OverloadBlocked,  # 503, manual block
    "ACCESS_DENIED": PortalError,  # 403
    "INVALID_CREDENTIALS": PortalError,  # 403: the user behind the token lacks rights
    "ERROR_MANIFEST_IS_NOT_AVAILABLE": PortalError,  # 404
    "insufficient_scope": PortalError,  # 403
    "expired_token": AuthFailed,  # 401 (refreshed once first; still failing -> broken)
    "user_access_error": PortalError,  # 403: the admin restricted the app to other users
    "PORTAL_DELETED": PortalError,  # 500, but nothing ran: the portal is gone
    # FACTS §6, other errors
    "OPERATION_TIME_LIMIT": WaitForReset,  # 429
    "ERROR_METHOD_NOT_FOUND": PortalError,  # 404
    "METHOD_CONFIRM_WAITING": PortalError,  # 401, an admin must confirm
    "METHOD_CONFIRM_DENIED": PortalError,  # 403
    "WRONG_AUTH_TYPE": PortalError,
    "ERROR_EVENT_NOT_FOUND": PortalError,  # 400
    "invalid_token": AuthFailed,  # treated like expired_token
    # OAuth server (oauth.bitrix.info)
    "invalid_request": PortalError,
    "invalid_client": AuthFailed,
    "invalid_scope": PortalError,
    "invalid_grant": AuthFailed,
    "PAYMENT_REQUIRED": AuthFailed,
    # REST 3.0 (BITRIX_REST_V3_EXCEPTION_*) are application errors; see classify_error
}

#: Codes after which an OAuth client refreshes its token once and repeats the call.
REFRESH_CODES = frozenset({"expired_token", "invalid_token", "NO_AUTH_FOUND"})

_CODE_TABLE_CI = {code.lower(): cls for code, cls in CODE_TABLE.items()}


def classify_error(http_status: int | None, code: str | None) -> type[BitrixError]:
    """The class for an error answer: by code when known, by HTTP status otherwise."""
    if code:
        cls = CODE_TABLE.get(code) or _CODE_TABLE_CI.get(code.lower())
        if cls is not None:
            return cls
        if code.upper().startswith("BITRIX_REST_V3_EXCEPTION_"):
            return PortalError
    if http_status is None:
        return PortalError
    if http_status in (301, 302, 303, 307, 308):
        return PortalMoved
    if http_status == 429:
        return NotSent
    if http_status >= 500:
        return OutcomeUnknown
    if http_status == 401:
        return AuthFailed
    return PortalError
