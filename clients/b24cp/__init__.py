"""b24cp: a small standard-library client of the Bitrix24 agent control plane.

Only `urllib` and `json`, so a skill folder can carry it as a plain copy. The token comes from
the environment (`B24CP_TOKEN`, with the plane's address in `B24CP_URL`), never from a file::

    from b24cp import Client

    plane = Client.from_env()
    plan = plane.submit("demo", method="user.current", wait=10)
    if plan["status"] == "pending_approval":
        plan = plane.wait(plan["id"], timeout=300)

Every error the plane answers is raised as `ApiError` with the API's `code` (`not_granted`,
`denied_by_policy`, `invalid_request`, ...); a plane that cannot be reached raises
`Unreachable`.
"""

from .client import (
    DEFAULT_URL,
    FINAL_STATES,
    PENDING_STATES,
    ApiError,
    Client,
    ClientError,
    Unreachable,
)

__all__ = ["DEFAULT_URL", "FINAL_STATES", "PENDING_STATES", "ApiError", "Client", "ClientError", "Unreachable"]
__version__ = "1.0.0"
