"""The approvers' pages: the inbox (their home after login), a plan in human terms, one-click
decisions and bulk decisions through one confirmation. Adapters only: every decision goes
through `apps.plans.services.plan_decide`, the same service `decide_plan` and the admin call."""

from __future__ import annotations

import json
import zoneinfo

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed, JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from apps.accounts.mfa import mfa_gate
from apps.audit import registry as audit_events
from apps.audit.models import AuditEntry
from apps.core.exceptions import ApplicationError
from apps.plans.choices import PlanStatus
from apps.plans.selectors import is_uuid
from apps.plans.services import plan_decide

from . import describe, previews, selectors, services

RISKS = ("read", "write", "destructive")
MAX_BULK = 100


def approver_required(view):
    """Logged in (allauth) and holding the approve permission; others get a 403 page."""

    @login_required
    def wrapper(request, *args, **kwargs):
        if not request.user.has_perm("plans.approve_plan") and not request.user.is_superuser:
            raise PermissionDenied("You are not an approver.")
        _activate_time_zone(request)
        return view(request, *args, **kwargs)

    wrapper.__name__ = view.__name__
    wrapper.__doc__ = view.__doc__
    return wrapper


def _activate_time_zone(request) -> None:
    """The approver's zone: their profile's, else the one their browser reported, else UTC."""
    for name in (getattr(request.user, "time_zone", ""), request.COOKIES.get("tz", "")):
        if name:
            try:
                timezone.activate(zoneinfo.ZoneInfo(name))
                return
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                continue
    timezone.activate(zoneinfo.ZoneInfo(settings.TIME_ZONE))


def _plan_or_404(request, plan_id):
    if not is_uuid(plan_id):
        raise Http404("No such plan.")
    plan = selectors.visible_plans(request.user).filter(pk=plan_id).first()
    if plan is None:
        raise Http404("No such plan.")
    return plan


def _page(request, template: str, context: dict):
    """Render inside the admin's frame (its header, user tools and styles)."""
    return TemplateResponse(request, template, {**admin.site.each_context(request), "is_nav_sidebar_enabled": False,
                                                **context})


def _audit_line(entry: AuditEntry) -> str:
    try:
        text = audit_events.get(entry.action).description
    except ValueError:
        text = entry.action
    data = entry.data or {}
    if data.get("to"):
        words = describe.STATUS_WORDS
        text += f": {words.get(data.get('from'), data.get('from'))} → {words.get(data['to'], data['to'])}"
    elif data.get("decision"):
        text += f": {data['decision']}d" + (f" (“{data['comment']}”)" if data.get("comment") else "")
    return text


def _row(user, plan) -> dict:
    approved = sum(1 for a in plan.approvals.all() if a.decision == "approve")
    steps_previews = previews.preview_of(plan)
    return {
        "plan": plan,
        "summary": describe.summary(plan.steps, steps_previews),
        "risk_word": describe.RISK_WORDS.get(plan.risk, plan.risk),
        "approved": approved,
        "may_decide": selectors.may_decide(user, plan),
    }


@approver_required
@require_GET
def inbox(request):
    filters = {key: request.GET.get(key, "").strip() for key in ("portal", "agent", "risk")}
    if filters["risk"] not in ("",) + RISKS:
        filters["risk"] = ""
    mine, others = selectors.inbox(request.user, **filters)
    visible = selectors.visible_plans(request.user).filter(status=PlanStatus.PENDING_APPROVAL)
    context = {
        "title": "Plans waiting for a decision",
        "mine": [_row(request.user, p) for p in mine],
        "others": [_row(request.user, p) for p in others],
        "filters": filters,
        "portals": sorted(set(visible.values_list("portal__slug", flat=True))),
        "agents": sorted(set(visible.values_list("agent__slug", flat=True))),
        "risks": RISKS,
        "fingerprint": selectors.inbox_fingerprint(request.user),
        "zone": timezone.get_current_timezone_name(),
        "now": timezone.now(),
    }
    return _page(request, "approvals/inbox.html", context)


@approver_required
@require_GET
def inbox_state(request):
    return JsonResponse({"fingerprint": selectors.inbox_fingerprint(request.user)})


@approver_required
@require_GET
def plan_page(request, plan_id):
    plan = _plan_or_404(request, plan_id)
    steps_previews = previews.preview_of(plan)
    entries = AuditEntry.objects.filter(plan_id=plan.pk).order_by("pk")
    stored = getattr(plan, "preview", None) if steps_previews else None
    revert = {"offered": False, "why_not": "", "plan": stored.revert_plan_id if stored else None}
    if plan.status == PlanStatus.SUCCEEDED and selectors.may_act_on_portal(request.user, plan):
        try:
            services.revert_steps(plan)
            revert["offered"] = True
        except ApplicationError as exc:
            revert["why_not"] = exc.message
    context = {
        "title": f"Plan {str(plan.pk)[:8]}",
        "plan": plan,
        "row": _row(request.user, plan),
        "status_word": describe.STATUS_WORDS.get(plan.status, plan.status),
        "steps": describe.plan_views(plan.steps, steps_previews),
        "preview_read": bool(steps_previews),
        "approvals": list(plan.approvals.all()),
        "attempts": list(plan.attempts.all()),
        "audit": [(e, _audit_line(e)) for e in entries],
        "raw": json.dumps(plan.steps, indent=2, ensure_ascii=False),
        "zone": timezone.get_current_timezone_name(),
        "now": timezone.now(),
        "is_pending": plan.status == PlanStatus.PENDING_APPROVAL,
        "changed": stored.changed if stored else None,
        "changed_at": stored.changed_at if stored else None,
        "revert": revert,
        "dismissed": list(plan.approvals.model.history.filter(plan=plan, dismissed_at__isnull=False)
                          .select_related("user")),
    }
    return _page(request, "approvals/plan.html", context)


@approver_required
@require_GET
def plan_state(request, plan_id):
    plan = _plan_or_404(request, plan_id)
    return JsonResponse({"status": plan.status, "updated_at": plan.updated_at.isoformat(),
                         "decisions": len(plan.approvals.all())})


DONE_MESSAGES = {
    ("approve", PlanStatus.APPROVED): "Approved: the plan runs now.",
    ("approve", PlanStatus.PENDING_APPROVAL): "Approved: it still needs another approver.",
    ("reject", PlanStatus.REJECTED): "Rejected: the agent will see your reason.",
}


@approver_required
def decide(request, plan_id):
    """One click from the plan page: approve or reject, with the content hash the page showed."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    back = reverse("approvals:plan", args=[plan_id])
    gate = mfa_gate(request, back)
    if gate:
        return gate
    plan = _plan_or_404(request, plan_id)
    decision = request.POST.get("decision", "")
    comment = request.POST.get("comment", "").strip()
    if decision == "reject" and not comment:
        messages.error(request, "Say why you reject it: the agent reads your reason.")
        return redirect(back)
    try:
        plan = plan_decide(plan_id=plan.pk, user=request.user, decision=decision, comment=comment,
                           seen_hash=request.POST.get("seen_hash") or None)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect(back)
    messages.success(request, DONE_MESSAGES.get((decision, plan.status), "Recorded."))
    return redirect(back)


@approver_required
def bulk(request):
    """Approve or reject several plans: a confirmation page listing them, then one POST."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    decision = request.POST.get("decision", "")
    if decision not in ("approve", "reject"):
        messages.error(request, "Choose approve or reject.")
        return redirect("approvals:inbox")
    ids = [pk for pk in request.POST.getlist("plan")[:MAX_BULK] if is_uuid(pk)]
    plans = [p for p in selectors.visible_plans(request.user).filter(pk__in=ids) if
             selectors.may_decide(request.user, p)]
    if not plans:
        messages.error(request, "Select at least one plan you may decide.")
        return redirect("approvals:inbox")
    if request.POST.get("confirm") != "yes":
        context = {"title": f"{decision.capitalize()} {len(plans)} plan{'s' if len(plans) != 1 else ''}?",
                   "decision": decision, "rows": [_row(request.user, p) for p in plans]}
        return _page(request, "approvals/bulk_confirm.html", context)
    gate = mfa_gate(request, reverse("approvals:inbox"))
    if gate:
        return gate
    comment = request.POST.get("comment", "").strip()
    if decision == "reject" and not comment:
        messages.error(request, "Say why you reject them: the agents read your reason.")
        return redirect("approvals:inbox")
    hashes = dict(zip(request.POST.getlist("plan"), request.POST.getlist("seen_hash"), strict=False))
    done, failed = 0, []
    for plan in plans:
        try:
            plan_decide(plan_id=plan.pk, user=request.user, decision=decision, comment=comment,
                        seen_hash=hashes.get(str(plan.pk)) or None)
            done += 1
        except ApplicationError as exc:
            failed.append(f"{str(plan.pk)[:8]}: {exc.message}")
    verb = "Approved" if decision == "approve" else "Rejected"
    if done:
        messages.success(request, f"{verb} {done} plan{'s' if done != 1 else ''}.")
    for line in failed:
        messages.error(request, line)
    return redirect("approvals:inbox")


@approver_required
def revert(request, plan_id):
    """Submit the inverse update of an executed plan as a new plan, then show that plan."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    back = reverse("approvals:plan", args=[plan_id])
    plan = _plan_or_404(request, plan_id)
    try:
        new = services.plan_revert(plan_id=plan.pk, user=request.user)
    except ApplicationError as exc:
        messages.error(request, exc.message)
        return redirect(back)
    messages.success(request, "A plan that puts the old values back was submitted: it is decided like any other.")
    return redirect(reverse("approvals:plan", args=[new.pk]))
