"""Agent services: the only writers of Agent rows. Each writes its audit entry in its own
transaction; a bearer token exists in clear only in what these return. An agent also gets a
callback secret (`agent.callback_secret`, encrypted at rest) that signs the plan callbacks sent to
it; it is shown with the token when the agent is made and when it is rotated."""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.audit import registry as audit_events
from apps.audit.services import audit_record
from apps.core.exceptions import InvalidRequest

from .models import Agent
from .tokens import TOKEN_PREFIX, generate_callback_secret, generate_token, hash_token

_UNSET = object()


def _checked_token(token: str | None) -> str:
    """A fresh token, or one generated earlier by `generate_token` (the demo keeps its token in a
    file so a re-run prints the same one)."""
    if token is None:
        return generate_token()
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or len(token) < len(TOKEN_PREFIX) + 32:
        raise InvalidRequest("That is not a token made by generate_token.", field="token")
    return token


def _full_clean(agent: Agent) -> None:
    try:
        agent.full_clean()
    except ValidationError as exc:
        field, messages = next(iter(exc.message_dict.items()))
        raise InvalidRequest(f"{field}: {' '.join(messages)}", field=field) from None


def _username(user) -> str | None:
    return user.get_username() if user is not None else None


def agent_create(*, slug: str, name: str = "", owner=None, token: str | None = None,
                 acting_user=None) -> tuple[Agent, str]:
    """Create an agent and return it with its bearer token: the only time the token exists in
    clear. Only its SHA-256 is stored."""
    if Agent.objects.filter(slug=slug).exists():
        raise InvalidRequest(f"An agent {slug!r} exists already.", field="slug")
    token = _checked_token(token)
    with transaction.atomic():
        agent = Agent(slug=slug, name=name or slug, owner=owner, token_hash=hash_token(token), token_prefix=token[:10],
                      callback_secret=generate_callback_secret())
        _full_clean(agent)
        agent.save()
        audit_record(action=audit_events.AGENT_CREATED, actor=acting_user,
                     data={"agent": slug, "owner": _username(owner)})
    return agent, token


def agent_update(*, agent: Agent, name=_UNSET, owner=_UNSET, acting_user=None) -> Agent:
    """Change an agent's name and/or owner (the owner may not approve the agent's plans, so who
    it is matters): one audit entry with the old and new values, none if nothing changed."""
    with transaction.atomic():
        locked = Agent.objects.select_for_update(of=("self",)).select_related("owner").get(pk=agent.pk)
        changed = {}
        if name is not _UNSET and name != locked.name:
            changed["name"] = {"from": locked.name, "to": name}
            locked.name = name
        if owner is not _UNSET and getattr(owner, "pk", None) != locked.owner_id:
            changed["owner"] = {"from": _username(locked.owner), "to": _username(owner)}
            locked.owner = owner
        if changed:
            _full_clean(locked)
            locked.save(update_fields=[*changed, "updated_at"])
            audit_record(action=audit_events.AGENT_CHANGED, actor=acting_user,
                         data={"agent": locked.slug, **changed})
    return locked


def agent_rotate_token(*, agent: Agent, token: str | None = None, reactivate: bool = False,
                       acting_user=None) -> str:
    """Give the agent a new token (the old one stops working). `reactivate` also lifts a
    revocation: the revoked token stays dead, the new one works."""
    token = _checked_token(token)
    values = {"token_hash": hash_token(token), "token_prefix": token[:10]}
    if reactivate:
        values.update(is_active=True, revoked_at=None)
    with transaction.atomic():
        Agent.objects.filter(pk=agent.pk).update(**values, updated_at=timezone.now())
        audit_record(action=audit_events.AGENT_TOKEN_ROTATED, actor=acting_user,
                     data={"agent": agent.slug, "reactivated": reactivate and not agent.is_active})
    agent.refresh_from_db()
    return token


def agent_rotate_callback_secret(*, agent: Agent, acting_user=None) -> str:
    """A new callback secret for the agent (callbacks signed from now on use it)."""
    secret = generate_callback_secret()
    with transaction.atomic():
        locked = Agent.objects.select_for_update().get(pk=agent.pk)
        locked.callback_secret = secret
        locked.save(update_fields=["callback_secret", "updated_at"])
        audit_record(action=audit_events.AGENT_CALLBACK_SECRET_ROTATED, actor=acting_user, data={"agent": agent.slug})
    agent.refresh_from_db()
    return secret


def agent_revoke(*, agent: Agent, acting_user=None) -> None:
    with transaction.atomic():
        Agent.objects.filter(pk=agent.pk).update(is_active=False, revoked_at=timezone.now(),
                                                 updated_at=timezone.now())
        audit_record(action=audit_events.AGENT_REVOKED, actor=acting_user, data={"agent": agent.slug})
    agent.refresh_from_db()
