"""What an approver sees: the plans they may decide, and everything a plan page shows."""

from __future__ import annotations

import hashlib

from django.db.models import Count, Prefetch, QuerySet

from apps.plans.choices import PlanStatus
from apps.plans.models import Approval, Plan
from apps.plans.selectors import plan_decisions_for, user_may_decide


def visible_plans(user) -> QuerySet[Plan]:
    """Plans on the portals this user approves for (a superuser sees every plan, read-only
    unless they are on the portal's approver list too)."""
    qs = Plan.objects.select_related("portal", "agent", "preview").prefetch_related(
        Prefetch("approvals", queryset=Approval.objects.select_related("user")))
    if user.is_superuser:
        return qs
    return qs.filter(portal__approvers=user)


def may_decide(user, plan: Plan) -> bool:
    """What plan_decide would accept from this user now: the one rule of apps.plans.selectors."""
    return "approve" in plan_decisions_for(user=user, plan=plan)


def inbox(user, *, portal: str = "", agent: str = "", risk: str = "") -> tuple[list[Plan], list[Plan]]:
    """Pending plans on this user's portals: (waiting on you, waiting on someone else)."""
    qs = visible_plans(user).filter(status=PlanStatus.PENDING_APPROVAL).order_by("expires_at", "created_at")
    if portal:
        qs = qs.filter(portal__slug=portal)
    if agent:
        qs = qs.filter(agent__slug=agent)
    if risk:
        qs = qs.filter(risk=risk)
    mine, others = [], []
    for plan in qs:
        (mine if may_decide(user, plan) else others).append(plan)
    return mine, others


def inbox_fingerprint(user) -> str:
    """Changes whenever a pending plan of this user's portals appears, moves or is decided."""
    rows = (Plan.objects.filter(pk__in=visible_plans(user).filter(status=PlanStatus.PENDING_APPROVAL).values("pk"))
            .annotate(decisions=Count("approvals")).order_by("pk").values_list("pk", "updated_at", "decisions"))
    text = ";".join(f"{pk}:{updated.timestamp():.6f}:{n}" for pk, updated, n in rows)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def may_act_on_portal(user, plan: Plan) -> bool:
    """Approvers of the plan's portal (the one rule) may ask for a revert."""
    return user_may_decide(user=user, portal=plan.portal)
