"""One exception hierarchy for the whole project (house rule 9).

Services raise these; they know nothing about HTTP beyond the status each class carries. The
JSON endpoint helper (`apps.core.api`) renders any of them as
`{"error": {"code": ..., "message": ..., **extra}}` in one place.

Every subclass is registered when its module is imported, so the codes the server can send are
read from the hierarchy (`error_codes()`, used by the OpenAPI document), never listed by hand.
"""

_REGISTRY: dict[str, set[int]] = {}


def error_codes() -> dict[str, tuple[int, ...]]:
    """Every error code of an imported ApplicationError subclass, with the HTTP statuses it is
    sent with. Import the modules that define errors first (the OpenAPI document imports the
    URLconf, which reaches every view)."""
    return {code: tuple(sorted(statuses)) for code, statuses in sorted(_REGISTRY.items())}


class ApplicationError(Exception):
    code = "error"
    status = 400
    default_message = "The request could not be completed."

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        _REGISTRY.setdefault(cls.code, set()).add(cls.status)

    def __init__(self, message: str | None = None, **extra):
        self.message = message or self.default_message
        self.extra = extra
        super().__init__(self.message)

    def as_dict(self) -> dict:
        return {"code": self.code, "message": self.message, **self.extra}


class InvalidRequest(ApplicationError):
    """400. Pass `field=` to name the offending part of the request."""

    code = "invalid_request"
    status = 400
    default_message = "The request is not valid."


class Unauthenticated(ApplicationError):
    code = "unauthenticated"
    status = 401
    default_message = "A valid bearer token is required."


class NotGranted(ApplicationError):
    """403: no grant covers the method. Pass `pack=` with the pack that would grant it."""

    code = "not_granted"
    status = 403
    default_message = "No grant of this agent covers that method on that portal."


class DeniedByPolicy(ApplicationError):
    code = "denied_by_policy"
    status = 403
    default_message = "The policy of the grant denies this call."


class NotAllowed(ApplicationError):
    """403 for people (approvers), not agents."""

    code = "permission_denied"
    status = 403
    default_message = "You may not do that."


class NotFound(ApplicationError):
    code = "not_found"
    status = 404
    default_message = "Not found."


class MethodNotAllowed(ApplicationError):
    code = "method_not_allowed"
    status = 405
    default_message = "HTTP method not allowed here."


class Conflict(ApplicationError):
    """409: the object is not in a state that allows the action."""

    code = "conflict"
    status = 409
    default_message = "The object is not in a state that allows this."


class IdempotencyInProgress(ApplicationError):
    code = "idempotency_in_progress"
    status = 409
    default_message = "A request with this idempotency key is still being processed; retry later."


class TooLarge(ApplicationError):
    code = "too_large"
    status = 413
    default_message = "The request body is too large."


class UnsupportedMediaType(ApplicationError):
    code = "unsupported_media_type"
    status = 415
    default_message = "Send the body as application/json."


class IdempotencyMismatch(ApplicationError):
    code = "idempotency_mismatch"
    status = 422
    default_message = "This idempotency key was used with a different request body."


class RateLimited(ApplicationError):
    """429. `retry_after` (seconds) becomes the Retry-After header."""

    code = "rate_limited"
    status = 429
    default_message = "Too many requests; retry later."

    def __init__(self, message: str | None = None, *, retry_after: int = 1, **extra):
        self.retry_after = max(1, int(retry_after))
        super().__init__(message, retry_after=self.retry_after, **extra)


class InternalError(ApplicationError):
    """500: a bug, never bad input. The message says nothing about the cause; the log does."""

    code = "internal_error"
    status = 500
    default_message = "Internal error; it has been logged."


class NotReady(ApplicationError):
    """503 from the readiness check. Pass `checks=` with the state of each dependency."""

    code = "not_ready"
    status = 503
    default_message = "A dependency is not reachable."
