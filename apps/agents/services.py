from django.db import transaction
from django.utils import timezone

from apps.audit import registry as audit_events
from apps.audit.services import audit_record
from apps.core.exceptions import InvalidRequest

from .models import Agent
from .tokens import generate_token, hash_token


def agent_create(*, slug: str, name: str = "", owner=None, acting_user=None) -> tuple[Agent, str]:
    """Create an agent and return it with its bearer token: the only time the token exists in
    clear. Only its SHA-256 is stored."""
    if Agent.objects.filter(slug=slug).exists():
        raise InvalidRequest(f"An agent {slug!r} exists already.", field="slug")
    token = generate_token()
    with transaction.atomic():
        agent = Agent(slug=slug, name=name or slug, owner=owner, token_hash=hash_token(token), token_prefix=token[:10])
        agent.full_clean()
        agent.save()
        audit_record(action=audit_events.AGENT_CREATED, actor=acting_user, data={"agent": slug})
    return agent, token


def agent_rotate_token(*, agent: Agent, acting_user=None) -> str:
    token = generate_token()
    with transaction.atomic():
        Agent.objects.filter(pk=agent.pk).update(token_hash=hash_token(token), token_prefix=token[:10])
        audit_record(action=audit_events.AGENT_TOKEN_ROTATED, actor=acting_user, data={"agent": agent.slug})
    agent.refresh_from_db()
    return token


def agent_revoke(*, agent: Agent, acting_user=None) -> None:
    with transaction.atomic():
        Agent.objects.filter(pk=agent.pk).update(is_active=False, revoked_at=timezone.now())
        audit_record(action=audit_events.AGENT_REVOKED, actor=acting_user, data={"agent": agent.slug})
    agent.refresh_from_db()
