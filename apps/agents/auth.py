"""Bearer-token authentication for the agent API. Sessions and cookies are never consulted."""

import datetime
import logging

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from apps.core.exceptions import Unauthenticated

from .models import Agent
from .tokens import hash_token

_LAST_USED_GRANULARITY = datetime.timedelta(minutes=1)
logger = logging.getLogger(__name__)


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
    agent = Agent.objects.filter(token_hash=hash_token(token), is_active=True).first()
    if agent is None:
        raise Unauthenticated("The bearer token is not valid or was revoked.")
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
