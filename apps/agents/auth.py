"""Bearer-token authentication for the agent API. Sessions and cookies are never consulted."""

import datetime

from django.utils import timezone

from apps.core.exceptions import Unauthenticated

from .models import Agent
from .tokens import hash_token

_LAST_USED_GRANULARITY = datetime.timedelta(minutes=1)


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
        Agent.objects.filter(pk=agent.pk).update(last_used_at=now)
    return agent
