"""Errors the simulated portal answers with.

`SandboxError` carries a Bitrix24 error code, description and HTTP status. The v2 renderer
turns it into `{"error": CODE, "error_description": TEXT}`; the REST 3.0 renderer into
`{"error": {"code": ..., "message": ..., "validation": [...]}}`.
"""

V3_PREFIX = "BITRIX_REST_V3_EXCEPTION_"


class SandboxError(Exception):
    def __init__(
        self,
        code: str,
        description: str = "",
        *,
        status: int = 400,
        extra: dict | None = None,
        validation: list[dict] | None = None,
    ):
        self.code = code
        self.description = description
        self.status = status
        self.extra = extra or {}
        self.validation = validation
        super().__init__(f"{code}: {description}")

    def v2_body(self) -> dict:
        return {"error": self.code, "error_description": self.description, **self.extra}

    def v3_body(self) -> dict:
        error: dict = {"code": self.code, "message": self.description}
        if self.validation:
            error["validation"] = self.validation
        return {"error": error, **self.extra}


# System errors (FACTS §6). Functions, so every raise gets a fresh instance.
def no_auth_found() -> SandboxError:
    return SandboxError("NO_AUTH_FOUND", "Wrong authorization data", status=401)


def expired_token() -> SandboxError:
    return SandboxError("expired_token", "The access token provided has expired.", status=401)


def method_not_found() -> SandboxError:
    return SandboxError("ERROR_METHOD_NOT_FOUND", "Method not found!", status=404)


def insufficient_scope() -> SandboxError:
    return SandboxError(
        "insufficient_scope",
        "The request requires higher privileges than provided by the webhook token",
        status=403,
    )


def query_limit_exceeded() -> SandboxError:
    return SandboxError("QUERY_LIMIT_EXCEEDED", "Too many requests", status=503)


def internal_server_error() -> SandboxError:
    return SandboxError("INTERNAL_SERVER_ERROR", "Internal server error", status=500)


def portal_not_found() -> SandboxError:
    return SandboxError("PORTAL_NOT_FOUND", "No sandbox portal with this address", status=404)


def wrong_auth_type() -> SandboxError:
    # A method that needs an application context called through an incoming webhook (FACTS §1).
    return SandboxError("WRONG_AUTH_TYPE", "Application context required", status=403)


def invalid_request(description: str) -> SandboxError:
    return SandboxError("INVALID_REQUEST", description, status=400)


def v3_error(name: str, message: str, *, status: int = 400, validation: list[dict] | None = None) -> SandboxError:
    return SandboxError(V3_PREFIX + name, message, status=status, validation=validation)


# The fault switch (SandboxPortal.fault_error): key -> (HTTP status, code, description, phase).
# Phase "portal": answered before the bucket and the credentials (the portal as a whole);
# "call": after the credentials and the method were accepted. Bodies as in samples/error_*.json.
FAULT_ERRORS: dict[str, tuple[int, str, str, str]] = {
    "INVALID_CREDENTIALS": (401, "INVALID_CREDENTIALS", "Invalid request credentials", "call"),
    "ACCESS_DENIED": (403, "ACCESS_DENIED", "REST API is available only on commercial plans", "portal"),
    "OVERLOAD_LIMIT": (503, "OVERLOAD_LIMIT", "REST API is blocked due to overload", "portal"),
    "PORTAL_DELETED": (500, "PORTAL_DELETED", "Portal was deleted", "portal"),
    "user_access_error": (403, "user_access_error", "The user does not have access to the application", "call"),
    "METHOD_CONFIRM_WAITING": (401, "METHOD_CONFIRM_WAITING", "Waiting for confirmation", "call"),
    "METHOD_CONFIRM_DENIED": (403, "METHOD_CONFIRM_DENIED", "Method call denied", "call"),
    "ERROR_UNEXPECTED_ANSWER": (500, "ERROR_UNEXPECTED_ANSWER", "Server returned an unexpected response", "call"),
    "INTERNAL_SERVER_ERROR": (500, "INTERNAL_SERVER_ERROR", "Internal server error", "call"),
    # REST 3.0 only (samples/error_rest3_access_denied.json); v2 calls are not affected.
    "ACCESSDENIEDEXCEPTION": (403, V3_PREFIX + "ACCESSDENIEDEXCEPTION", "Access denied", "call"),
}
MOVED = "MOVED"  # 302 to SandboxPortal.moved_to (FACTS §1, portal address change)


def fault_error(key: str) -> SandboxError:
    status, code, description, _ = FAULT_ERRORS[key]
    return SandboxError(code, description, status=status)


def https_required() -> SandboxError:
    return SandboxError("INVALID_REQUEST", "Https required.", status=400)
