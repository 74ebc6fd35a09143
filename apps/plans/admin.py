"""Approvals in the Django admin. Plans are read-only here (house rule 10): the only way to change
one is an approve/reject/settle action, which — like `delete_selected` — shows a confirmation
page with exactly what will be sent and a comment box, then calls the same service the
`decide_plan` command calls."""

import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from apps.accounts.mfa import mfa_gate
from apps.core.admin import ReadOnlyAdminMixin
from apps.core.exceptions import ApplicationError

from . import services
from .choices import ApprovalDecision, PlanStatus
from .models import Approval, ExecutionAttempt, PendingPlan, Plan
from .selectors import is_uuid, plan_decisions_for, portals_decidable_by, user_may_decide


class CommentForm(forms.Form):
    comment = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), required=False, max_length=2000)


class ApprovalInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Approval
    extra = 0
    fields = ("user", "decision", "comment", "content_hash", "created_at")
    readonly_fields = fields


class AttemptInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = ExecutionAttempt
    extra = 0
    fields = ("number", "outcome", "started_at", "finished_at", "detail")
    readonly_fields = fields


def _pretty(value) -> str:
    return format_html("<pre style='white-space:pre-wrap;margin:0'>{}</pre>",
                       json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True))


ACTIONS = {
    "approve": ("Approve", "approve {what}"),
    "reject": ("Reject", "reject {what}"),
    "settle_succeeded": ("Mark done", "mark {what} as done (the call did happen)"),
    "settle_failed": ("Mark failed", "mark {what} as failed (the call did not happen)"),
}


@admin.register(Plan)
class PlanAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("short_id", "portal", "agent", "status", "risk", "method_list", "approvals_progress", "created_at")
    list_filter = ("status", "risk", "portal")
    search_fields = ("id", "reason", "agent__slug", "portal__slug")
    date_hierarchy = "created_at"
    inlines = [ApprovalInline, AttemptInline]
    actions = ["approve_selected", "reject_selected", "settle_succeeded", "settle_failed"]
    readonly_fields = (
        "id", "portal", "agent", "status", "risk", "reason", "steps_pretty", "packs", "approvals_required",
        "content_hash", "created_at", "updated_at", "expires_at", "finished_at", "attempt_count", "result_pretty",
        "error_pretty", "callback_url",
    )
    fields = readonly_fields
    change_form_template = "admin/plans/plan/change_form.html"

    # Read-only (the mixin): no form can bypass the state machine.
    def has_approve_permission(self, request):
        """The decision actions are offered only to people the services accept: the permission
        and a place on some portal's approver list (apps.plans.selectors), superuser or not."""
        return portals_decidable_by(request.user).exists()

    def get_queryset(self, request):
        qs = super().get_queryset(request).select_related("portal", "agent").prefetch_related("approvals")
        if request.user.is_superuser:
            return qs
        return qs.filter(portal__approvers=request.user)

    # --- columns ----------------------------------------------------------------------------
    @admin.display(description="plan")
    def short_id(self, obj):
        return str(obj.pk)[:8]

    @admin.display(description="methods")
    def method_list(self, obj):
        return ", ".join(obj.methods)

    @admin.display(description="approvals")
    def approvals_progress(self, obj):
        approved = sum(1 for a in obj.approvals.all() if a.decision == ApprovalDecision.APPROVE)
        return f"{approved}/{obj.approvals_required}"

    @admin.display(description="steps (exactly what will be sent)")
    def steps_pretty(self, obj):
        return _pretty(obj.steps)

    @admin.display(description="result")
    def result_pretty(self, obj):
        return _pretty(obj.result) if obj.result is not None else "—"

    @admin.display(description="error")
    def error_pretty(self, obj):
        return _pretty(obj.error) if obj.error is not None else "—"

    # --- decisions ----------------------------------------------------------------------------
    @admin.action(permissions=["approve"], description="Approve selected plans")
    def approve_selected(self, request, queryset):
        return self._decide(request, queryset, "approve")

    @admin.action(permissions=["approve"], description="Reject selected plans")
    def reject_selected(self, request, queryset):
        return self._decide(request, queryset, "reject")

    @admin.action(permissions=["approve"], description="Mark selected plans done (outcome checked on the portal)")
    def settle_succeeded(self, request, queryset):
        return self._decide(request, queryset, "settle_succeeded")

    @admin.action(permissions=["approve"], description="Mark selected plans failed (outcome checked on the portal)")
    def settle_failed(self, request, queryset):
        return self._decide(request, queryset, "settle_failed")

    def _apply(self, request, plan, kind, comment):
        if kind in ("approve", "reject"):
            return services.plan_decide(plan_id=plan.pk, user=request.user, decision=kind, comment=comment,
                                        seen_hash=request.POST.get(f"hash-{plan.pk}") or None)
        return services.plan_reconcile(plan_id=plan.pk, user=request.user,
                                       succeeded=kind == "settle_succeeded", comment=comment)

    def _decide(self, request, queryset, kind):
        plans = list(queryset)
        form = CommentForm(request.POST if request.POST.get("post") else None)
        if request.POST.get("post") and form.is_valid():
            gate = mfa_gate(request, reverse("admin:plans_pendingplan_changelist"))
            if gate:
                return gate
            done = 0
            for plan in plans:
                try:
                    updated = self._apply(request, plan, kind, form.cleaned_data["comment"])
                except ApplicationError as exc:
                    self.message_user(request, f"Plan {str(plan.pk)[:8]}: {exc.message}", messages.ERROR)
                    continue
                done += 1
                self.message_user(request, f"Plan {str(plan.pk)[:8]}: {updated.get_status_display()}.",
                                  messages.SUCCESS)
            return None
        # The confirmation lists only what the user may decide now (apps.plans.selectors).
        allowed = [plan for plan in plans if kind in plan_decisions_for(user=request.user, plan=plan)]
        for plan in plans:
            if plan not in allowed:
                self.message_user(request, f"Plan {str(plan.pk)[:8]} left out: you may not "
                                  f"{ACTIONS[kind][1].format(what='it')} (it is {plan.status}).", messages.WARNING)
        if not allowed:
            return None
        return self._confirmation(request, allowed, kind, form, single=False)

    def _confirmation(self, request, plans, kind, form, *, single):
        """The page every decision goes through: exactly what will be sent, the hash, a comment."""
        label, sentence = ACTIONS[kind]
        context = {
            **self.admin_site.each_context(request),
            "title": f"{label}: are you sure?",
            "opts": self.model._meta,
            "plans": [(p, json.dumps(p.steps, indent=2, ensure_ascii=False, sort_keys=True)) for p in plans],
            "form": form,
            "kind": kind,
            "label": label,
            "sentence": sentence.format(what="this plan" if len(plans) == 1 else "the selected plans"),
            "action_name": request.POST.get("action"),
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            "single": single,
        }
        return TemplateResponse(request, "admin/plans/plan/decide_confirmation.html", context)

    # --- one plan's page: approve/reject buttons lead to the same confirmation ------------------
    def get_urls(self):
        info = self.model._meta.app_label, self.model._meta.model_name
        return [
            path("<uuid:plan_id>/decide/<str:kind>/", self.admin_site.admin_view(self.decide_view),
                 name="{}_{}_decide".format(*info)),
        ] + super().get_urls()

    def decide_view(self, request, plan_id, kind):
        if kind not in ACTIONS or not self.has_approve_permission(request):
            raise DjangoPermissionDenied
        plan = get_object_or_404(self.get_queryset(request), pk=plan_id)
        if request.method == "POST" and request.POST.get("post"):
            # Confirmed: the service has the last word (the plan may have moved on meanwhile).
            if not user_may_decide(user=request.user, portal=plan.portal):
                raise DjangoPermissionDenied
            gate = mfa_gate(request, reverse("admin:plans_plan_change", args=[plan.pk]))
            if gate:
                return gate
            form = CommentForm(request.POST)
            if form.is_valid():
                try:
                    updated = self._apply(request, plan, kind, form.cleaned_data["comment"])
                    self.message_user(request, f"Plan {str(plan.pk)[:8]}: {updated.get_status_display()}.",
                                      messages.SUCCESS)
                except ApplicationError as exc:
                    self.message_user(request, exc.message, messages.ERROR)
                return redirect(reverse("admin:plans_plan_change", args=[plan.pk]))
        if kind not in plan_decisions_for(user=request.user, plan=plan):
            raise DjangoPermissionDenied
        return self._confirmation(request, [plan], kind, CommentForm(), single=True)

    def history_view(self, request, object_id, extra_context=None):
        """A plan's history is its audit trail, on its approval page (not Django's empty log)."""
        return redirect(reverse("approvals:plan", args=[object_id]))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = extra_context or {}
        plan = self.get_queryset(request).filter(pk=object_id).first() if is_uuid(object_id) else None
        if plan is not None:
            extra_context["decision_buttons"] = plan_decisions_for(user=request.user, plan=plan)
            extra_context["action_labels"] = {k: v[0] for k, v in ACTIONS.items()}
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(PendingPlan)
class PendingPlanAdmin(PlanAdmin):
    """The approvers' inbox: plans waiting for a decision on portals they may approve."""

    list_filter = ("risk", "portal")
    actions = ["approve_selected", "reject_selected"]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(status=PlanStatus.PENDING_APPROVAL)

    def has_view_permission(self, request, obj=None):
        # Seeing plans is one permission, whichever list shows them.
        return request.user.has_perm("plans.view_plan") or self.has_approve_permission(request)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        return redirect(reverse("admin:plans_plan_change", args=[object_id]))
