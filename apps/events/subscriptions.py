"""Per-agent event subscriptions: matching events are POSTed to the agent's callback, signed.

- `subscription_create` / `subscription_delete`: the agent's own, audited; the HMAC secret is
  returned once and stored encrypted.
- `fan_out(event)`: runs inside `event_process`'s transaction once an event is processed; one
  delivery task per matching subscription, enqueued on commit.
- `deliver`: re-checks that the agent may still see the event (active agent and subscription,
  a grant on the portal whose pack reads the entity), then POSTs the feed's rendering of the event
  through the same guarded, signed sender as plan callbacks (`apps.approvals.callbacks`: public
  addresses only unless allow-listed, no redirects, bounded time; `X-CP-Signature: t=<unix
  time>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`). A non-2xx answer or a network error is
  retried by the task (`CALLBACK_TRIES` in all).
"""

from __future__ import annotations

import json
import secrets

from django.db import transaction
from django.utils import timezone

from apps.approvals import callbacks
from apps.audit import registry as audit_events
from apps.audit.services import audit_record
from apps.core.exceptions import InvalidRequest, NotFound
from apps.policy.selectors import grant_views_for

from .models import EventSubscription, InboundEvent
from .readable import may_read

MAX_PER_AGENT = 20
CALLBACK_TRIES = 5


def validate_callback_url(url) -> str:
    """An http(s) URL the plane will call: public addresses only, unless allow-listed."""
    if not isinstance(url, str) or len(url) > 500:
        raise InvalidRequest("callback_url is an https URL of at most 500 characters.", field="callback_url")
    callbacks.check_destination(url.strip())
    return url.strip()


def subscription_create(*, agent, callback_url, portal=None, types: frozenset[str] | None = None
                        ) -> tuple[EventSubscription, str]:
    callback_url = validate_callback_url(callback_url)
    secret = secrets.token_urlsafe(32)
    with transaction.atomic():
        if EventSubscription.objects.select_for_update().filter(agent=agent, is_active=True).count() >= MAX_PER_AGENT:
            raise InvalidRequest(f"An agent has at most {MAX_PER_AGENT} subscriptions.", field="callback_url")
        sub = EventSubscription.objects.create(agent=agent, portal=portal, types=",".join(sorted(types or ())),
                                               callback_url=callback_url, secret=secret)
        audit_record(action=audit_events.EVENTS_SUBSCRIPTION_CHANGED, actor=agent, portal=portal, data={
            "op": "subscribe", "subscription": sub.pk, "callback_url": callback_url, "types": sub.types})
    return sub, secret


def subscription_delete(*, agent, subscription_id) -> None:
    with transaction.atomic():
        sub = EventSubscription.objects.select_for_update().filter(
            pk=subscription_id, agent=agent, is_active=True).first() if str(subscription_id).isdigit() else None
        if sub is None:
            raise NotFound("No such subscription.")
        sub.is_active = False
        sub.save(update_fields=["is_active", "updated_at"])
        audit_record(action=audit_events.EVENTS_SUBSCRIPTION_CHANGED, actor=agent, portal=sub.portal, data={
            "op": "unsubscribe", "subscription": sub.pk})


def subscriptions_for_agent(agent) -> list[EventSubscription]:
    return list(EventSubscription.objects.filter(agent=agent, is_active=True).select_related("portal"))


def _may_see(sub: EventSubscription, event: InboundEvent) -> bool:
    if not (sub.is_active and sub.agent.is_active and event.portal.is_active):
        return False
    if sub.portal_id is not None and sub.portal_id != event.portal_id:
        return False
    types = sub.type_set()
    if types and event.event not in types:
        return False
    return may_read(grant_views_for(agent=sub.agent, portal=event.portal), event.event)


def fan_out(event: InboundEvent) -> int:
    """Enqueue a delivery (on commit) for every subscription that may see `event`."""
    from .tasks import deliver_event

    subs = EventSubscription.objects.filter(is_active=True, agent__is_active=True,
                                            agent__grants__portal=event.portal).distinct().select_related("agent")
    count = 0
    for sub in subs:
        if _may_see(sub, event):
            deliver_event.delay_on_commit(sub.pk, event.pk)
            count += 1
    return count


def deliver(*, subscription_id: int, event_id: int) -> str:
    """POST one event to one subscription. Returns `sent`, `skipped` or `failed` (retry)."""
    from .api import render_event

    sub = EventSubscription.objects.select_related("agent", "portal").filter(pk=subscription_id).first()
    event = InboundEvent.objects.select_related("portal").filter(pk=event_id).first()
    if sub is None or event is None or event.feed_seq is None or not _may_see(sub, event):
        return "skipped"
    body = json.dumps({"subscription": sub.pk, "event": render_event(event)}, ensure_ascii=False,
                      separators=(",", ":")).encode()
    headers = {callbacks.SIGNATURE_HEADER: callbacks.sign(sub.secret, body), "X-Subscription-Id": str(sub.pk)}
    try:
        answer = callbacks.send(callbacks.check_destination(sub.callback_url), body=body, headers=headers)
        error = "" if 200 <= answer.status < 300 else f"HTTP {answer.status}"
    except InvalidRequest as exc:  # the address is no longer public: not worth a retry
        EventSubscription.objects.filter(pk=sub.pk).update(last_delivery_at=timezone.now(), last_error=exc.message)
        return "skipped"
    except Exception as exc:  # noqa: BLE001 - any transport failure is a failed try
        error = f"{type(exc).__name__}"
    EventSubscription.objects.filter(pk=sub.pk).update(last_delivery_at=timezone.now(), last_error=error[:500])
    return "failed" if error else "sent"
