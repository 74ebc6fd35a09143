"""Errors raised by the pure policy engine.

Both subclass the project hierarchy (`apps.core.exceptions`), so the JSON endpoint helper renders
them without knowing about policy: `PolicyInputError` is a 400 `invalid_request` naming the
offending `field` (default `"method"`), `PolicyForbidden` is a 403 for requests that are well
formed but never allowed, whatever the grants say (a `batch` inside a `batch`, for instance).
"""

from apps.core.exceptions import DeniedByPolicy, InvalidRequest


class PolicyInputError(InvalidRequest):
    """400: the method name, the steps or the batch commands cannot be checked as given."""

    default_message = "The method or its parameters cannot be checked as given."

    def __init__(self, message: str | None = None, *, field: str = "method", **extra):
        super().__init__(message, field=field, **extra)

    @property
    def field(self) -> str:
        return self.extra["field"]


class PolicyForbidden(DeniedByPolicy):
    """403: the request is understood but refused by a fixed rule, not by a grant."""

    default_message = "This call is never allowed through the control plane."

    def __init__(self, message: str | None = None, *, field: str = "method", **extra):
        super().__init__(message, field=field, **extra)

    @property
    def field(self) -> str:
        return self.extra["field"]
