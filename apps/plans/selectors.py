import uuid

from django.db.models import Q

from apps.core.exceptions import InvalidRequest, NotFound

from .choices import PlanStatus
from .models import Plan


def plans_for_agent(agent):
    """Every plan query of the agent API starts here, so no other agent's plan can be reached
    (NetBox's `restrict()`)."""
    return Plan.objects.filter(agent=agent).select_related("portal").prefetch_related("approvals")


def plan_get_for_agent(*, agent, plan_id) -> Plan:
    plan = plans_for_agent(agent).filter(pk=plan_id).first() if is_uuid(plan_id) else None
    if plan is None:
        raise NotFound("No such plan.")
    return plan


def is_uuid(value) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def plan_list_for_agent(*, agent, status=None, portal=None, cursor=None, limit=50) -> list[Plan]:
    qs = plans_for_agent(agent)
    if status:
        if status not in PlanStatus.values:
            raise InvalidRequest(f"status is one of {', '.join(PlanStatus.values)}.", field="status")
        qs = qs.filter(status=status)
    if portal:
        qs = qs.filter(portal__slug=portal)
    if cursor:
        created_at, pk = cursor
        qs = qs.filter(Q(created_at__lt=created_at) | Q(created_at=created_at, pk__lt=pk))
    return list(qs.order_by("-created_at", "-pk")[: limit + 1])
