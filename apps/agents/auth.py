"""Bearer-token authentication for the agent API. Sessions and cookies are never consulted."""

import datetime
import logging

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from apps.core import sql
from apps.core.exceptions import Unauthenticated

from .models import Agent
from .tokens import hash_token

_LAST_USED_GRANULARITY = datetime.timedelta(minutes=1)
logger = logging.getLogger(__name__)

# Every API request runs this lookup: one fixed statement (apps.core.sql). The callback secret
# is left out (deferred): decrypting it on every request would be wasted, only callbacks read it.
_AGENT = sql.Columns(Agent, ["id", "slug", "name", "owner", "token_prefix", "is_active", "revoked_at",
                             "last_used_at", "created_at", "updated_at"])
_BY_TOKEN_HASH = (f"SELECT {_AGENT.sql} FROM {Agent._meta.db_table} "  # noqa: S608  # nosec B608
                  "WHERE token_hash = %s AND is_active")  # the table's name is the model's; values are parameters


def authenticate_agent(request) -> Agent:
    header = request.headers.get("Authorization", "")
    if "," in header:  # a server joins repeated headers with commas; no token contains one
        raise Unauthenticated("Send exactly one Authorization header.")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("Send Authorization: Bearer <agent token>.")
    if len(token) > 200 or not token.isascii():
        raise Unauthenticated("The bearer token is not valid.")
    row = sql.fetchone(_BY_TOKEN_HASH, [hash_token(token)])
    if row is None:
        raise Unauthenticated("The bearer token is not valid or was revoked.")
    agent = _AGENT.load(row)
    now = timezone.now()
    if agent.last_used_at is None or now - agent.last_used_at > _LAST_USED_GRANULARITY:
        _touch(agent, now)
    return agent


def _touch(agent: Agent, now) -> None:
    """Record when the agent was last seen. Bookkeeping only: when the database refuses the write
    (SQLite answers "locked" while another connection writes), the request goes on and the next
    one a minute later tries again. Inside a caller's transaction the write gets a savepoint so
    a refusal cannot break that transaction."""
    try:
        if connection.in_atomic_block:
            with transaction.atomic():
                Agent.objects.filter(pk=agent.pk).update(last_used_at=now)
        else:
            Agent.objects.filter(pk=agent.pk).update(last_used_at=now)
    except DatabaseError as exc:
        logger.warning("agent %s: last_used_at not recorded (%s)", agent.slug, exc)
