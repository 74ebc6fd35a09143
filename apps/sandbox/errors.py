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
