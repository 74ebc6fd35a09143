"""Callback services: schedule a delivery when a plan ends and make one delivery attempt (signed
with the agent's callback secret, apps.agents). Each writes its audit entry in its own transaction."""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit import registry as audit_events
from apps.audit.services import audit_record
from apps.bitrix.redact import redact

from . import callbacks
from .models import CallbackDelivery, DeliveryStatus

logger = logging.getLogger(__name__)

CALLBACK_DELIVERED = audit_events.register("plan.callback", "A plan's final state was delivered to its callback")
CALLBACK_GAVE_UP = audit_events.register("plan.callback_failed", "A plan's callback could not be delivered")

# Seconds before attempt n+1 (n starting at 1); the last entry ends the tries.
BACKOFF = (5, 30, 120, 600, 1800, 3600)


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
    secret = delivery.plan.agent.callback_secret
    try:
        destination = callbacks.check_destination(delivery.url)
    except callbacks.DestinationRefused as exc:
        _finish(delivery, status=DeliveryStatus.REFUSED, http_status=None, error=exc.message)
        return None
    body = _body(delivery)
    headers = {callbacks.DELIVERY_HEADER: str(delivery.pk)}
    if not secret:  # an agent made before callback secrets: never send unsigned
        _finish(delivery, status=DeliveryStatus.REFUSED, http_status=None,
                error="The agent has no callback secret; give it one in the admin (rotate callback secret).")
        return None
    headers[callbacks.SIGNATURE_HEADER] = callbacks.sign(secret, body)
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


# --- revert: the inverse update of an executed plan, submitted as a new plan -------------------

PLAN_REVERT_REQUESTED = audit_events.register("plan.revert_requested",
                                              "An approver asked to undo an executed plan's updates")


def revert_steps(plan) -> list[dict]:
    """The steps that put back what `plan`'s updates changed, from their stored pre-images.
    Raises InvalidRequest saying why when a step cannot be reverted."""
    from apps.core.exceptions import InvalidRequest

    from . import entities
    from .previews import preview_of

    stored = preview_of(plan)
    inverse = []
    for step in plan.steps:
        entity, verb, _ = entities.split(step["method"])
        if entity is not None and verb == "delete":
            raise InvalidRequest(f"Step {step['name']!r} deleted the {entity.noun}: Bitrix24 has no undelete "
                                 "over REST, so it cannot be reverted.", field="plan")
        if entity is None or verb != "update":
            raise InvalidRequest(f"Step {step['name']!r} ({step['method']}) is not an update of a known record, "
                                 "so there is nothing to put back.", field="plan")
        before = (stored.get(step["name"]) or {}).get("before")
        if before is None:
            raise InvalidRequest(f"No pre-image of step {step['name']!r} was read, so its old values are "
                                 "unknown.", field="plan")
        params = step.get("params") or {}
        fields = {}
        for name in (params.get(entity.fields_param) or {}):
            value, known = entities.field_value(entity, before, name)
            if known:
                fields[name] = value
        key = {k: params[k] for k in (entity.id_param, *entity.key_params) if k in params}
        inverse.append({"name": step["name"], "method": step["method"], "params": {**key, entity.fields_param: fields}})
    return inverse


def plan_revert(*, plan_id, user):
    """Submit the inverse of an executed update as a new plan of the same agent, under its grants
    and policy (it is approved like any other). Only someone who may decide on the portal asks."""
    from apps.core.exceptions import InvalidRequest, NotAllowed
    from apps.plans.choices import PlanStatus
    from apps.plans.models import Plan
    from apps.plans.selectors import user_may_decide
    from apps.plans.services import plan_submit

    from .models import PlanPreview

    plan = Plan.objects.select_related("portal", "agent").filter(pk=plan_id).first()
    if plan is None:
        raise InvalidRequest("No such plan.", field="plan")
    if not user_may_decide(user=user, portal=plan.portal):
        raise NotAllowed(f"{user.get_username()} may not act on plans of portal {plan.portal.slug}.")
    if plan.status != PlanStatus.SUCCEEDED:
        raise InvalidRequest("Only a plan that ran successfully can be reverted.", field="plan")
    steps = revert_steps(plan)
    with transaction.atomic():
        revert = plan_submit(agent=plan.agent, portal=plan.portal, steps=steps,
                             reason=f"Revert of plan {str(plan.pk)[:8]}, asked by {user.get_username()}").plan
        PlanPreview.objects.filter(plan=plan).update(revert_plan=revert)
        audit_record(action=PLAN_REVERT_REQUESTED, actor=user, portal=plan.portal, plan=plan,
                     data={"revert_plan": str(revert.pk)})
    return revert
