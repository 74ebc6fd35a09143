"""Callback services: issue an agent's signing secret, schedule a delivery when a plan ends, and
make one delivery attempt. Each writes its audit entry in its own transaction."""

from __future__ import annotations

import json
import logging
import secrets

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit import registry as audit_events
from apps.audit.services import audit_record
from apps.bitrix.redact import redact

from . import callbacks
from .models import CallbackDelivery, CallbackSecret, DeliveryStatus

logger = logging.getLogger(__name__)

CALLBACK_SECRET_ISSUED = audit_events.register("agent.callback_secret", "An agent got a new callback secret")
CALLBACK_DELIVERED = audit_events.register("plan.callback", "A plan's final state was delivered to its callback")
CALLBACK_GAVE_UP = audit_events.register("plan.callback_failed", "A plan's callback could not be delivered")

# Seconds before attempt n+1 (n starting at 1); the last entry ends the tries.
BACKOFF = (5, 30, 120, 600, 1800, 3600)


def callback_secret_issue(*, agent, acting_user=None) -> str:
    """Create or replace the agent's callback secret and return it in clear: the only time."""
    secret = "whsec_" + secrets.token_urlsafe(32)
    with transaction.atomic():
        CallbackSecret.objects.update_or_create(agent=agent, defaults={"secret": secret})
        audit_record(action=CALLBACK_SECRET_ISSUED, actor=acting_user, data={"agent": agent.slug})
    return secret


def callback_url_check(url: str) -> str:
    """At submission: refuse a callback URL the plane would not call (InvalidRequest, field
    `callback_url`)."""
    if url:
        callbacks.check_destination(url)
    return url


def callback_schedule(*, plan) -> CallbackDelivery | None:
    """Inside the transaction that moved `plan` to a final state: one delivery row, sent on commit."""
    if not plan.callback_url:
        return None
    try:
        with transaction.atomic():
            delivery = CallbackDelivery.objects.create(plan=plan, url=plan.callback_url, plan_status=plan.status)
    except IntegrityError:  # this final state was scheduled already (a replayed transition)
        return None
    from .tasks import deliver_callback

    deliver_callback.delay_on_commit(str(delivery.pk))
    return delivery


def _body(delivery: CallbackDelivery) -> bytes:
    from apps.plans.schemas import render_plan

    payload = {"type": "plan.final", "delivery": str(delivery.pk), "plan": render_plan(delivery.plan)}
    return json.dumps(payload, cls=DjangoJSONEncoder, ensure_ascii=False, separators=(",", ":")).encode()


def _finish(delivery: CallbackDelivery, *, status: str, http_status: int | None, error: str) -> None:
    with transaction.atomic():
        now = timezone.now()
        CallbackDelivery.objects.filter(pk=delivery.pk).update(
            status=status, last_http_status=http_status, last_error=error[:500], last_attempt_at=now,
            delivered_at=now if status == DeliveryStatus.DELIVERED else None)
        action = CALLBACK_DELIVERED if status == DeliveryStatus.DELIVERED else CALLBACK_GAVE_UP
        audit_record(action=action, actor=None, portal=delivery.plan.portal, plan=delivery.plan, data={
            "delivery": str(delivery.pk), "status": status, "attempts": delivery.attempts,
            "http_status": http_status, "error": error[:200]})


def callback_attempt(*, delivery_id) -> float | None:
    """One delivery attempt. Returns the seconds to wait before the next try, or None when done
    (delivered, refused, given up or nothing to do)."""
    with transaction.atomic():
        delivery = (CallbackDelivery.objects.select_for_update().select_related("plan__portal", "plan__agent")
                    .filter(pk=delivery_id).first())
        if delivery is None or delivery.status != DeliveryStatus.PENDING:
            return None
        delivery.attempts += 1
        CallbackDelivery.objects.filter(pk=delivery.pk).update(attempts=delivery.attempts,
                                                               last_attempt_at=timezone.now())
    secret_row = CallbackSecret.objects.filter(agent=delivery.plan.agent).first()
    try:
        destination = callbacks.check_destination(delivery.url)
    except callbacks.DestinationRefused as exc:
        _finish(delivery, status=DeliveryStatus.REFUSED, http_status=None, error=exc.message)
        return None
    body = _body(delivery)
    headers = {callbacks.DELIVERY_HEADER: str(delivery.pk)}
    if secret_row is not None:
        headers[callbacks.SIGNATURE_HEADER] = callbacks.sign(secret_row.secret, body)
    http_status, error = None, ""
    try:
        answer = callbacks.send(destination, body=body, headers=headers)
        http_status = answer.status
        if 200 <= answer.status < 300:
            _finish(delivery, status=DeliveryStatus.DELIVERED, http_status=http_status, error="")
            return None
        error = f"HTTP {answer.status}"
    except Exception as exc:  # noqa: BLE001 - any transport failure is a failed try, never a crash
        error = redact(f"{type(exc).__name__}: {exc}")
    if delivery.attempts >= settings.CALLBACK_MAX_ATTEMPTS:
        _finish(delivery, status=DeliveryStatus.FAILED, http_status=http_status, error=error)
        return None
    CallbackDelivery.objects.filter(pk=delivery.pk).update(last_http_status=http_status, last_error=error[:500])
    logger.info("callback %s attempt %s failed: %s", delivery.pk, delivery.attempts, error)
    return float(BACKOFF[min(delivery.attempts - 1, len(BACKOFF) - 1)])
