"""The approvers' flow in the admin, through the test client."""

import pytest

from apps.plans import services
from apps.plans.models import Plan

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/plans/plan/"


def pending(agent, portal, method="crm.lead.add"):
    steps = [{"name": "call", "method": method, "params": {"id": 7, "fields": {"A": 1}}}]
    return services.plan_submit(agent=agent, portal=portal, steps=steps).plan


def confirm(client, plan, action, comment=""):
    return client.post(CHANGELIST, {"action": action, "_selected_action": [str(plan.pk)], "post": "yes",
                                    "comment": comment, f"hash-{plan.pk}": plan.content_hash})


def test_confirmation_page_shows_what_will_be_sent(client, agent, portal, approver):
    plan = pending(agent, portal)
    client.force_login(approver)
    page = client.post(CHANGELIST, {"action": "approve_selected", "_selected_action": [str(plan.pk)]})
    assert page.status_code == 200
    text = page.content.decode()
    assert "crm.lead.add" in text and plan.content_hash in text and 'name="comment"' in text
    assert Plan.objects.get(pk=plan.pk).status == "pending_approval"  # nothing decided yet


def test_approve_with_comment(client, agent, portal, approver, django_capture_on_commit_callbacks,
                              queued_executions):
    plan = pending(agent, portal)
    client.force_login(approver)
    with django_capture_on_commit_callbacks() as callbacks:
        response = confirm(client, plan, "approve_selected", "checked with sales")
    assert response.status_code == 302
    plan.refresh_from_db()
    assert plan.status == "approved"
    assert plan.approvals.get().comment == "checked with sales"
    assert queued_executions == []  # nothing is published before the transaction commits
    for callback in callbacks:
        callback()
    assert queued_executions == [((str(plan.pk),), {}, None)]


def test_reject(client, agent, portal, approver):
    plan = pending(agent, portal)
    client.force_login(approver)
    confirm(client, plan, "reject_selected", "wrong lead")
    plan.refresh_from_db()
    assert plan.status == "rejected"


def test_approve2_in_the_admin_needs_two_people(client, agent, portal, approver, approver2):
    plan = pending(agent, portal, "crm.lead.delete")
    client.force_login(approver)
    confirm(client, plan, "approve_selected")
    response = confirm(client, plan, "approve_selected")  # the same person again
    assert Plan.objects.get(pk=plan.pk).status == "pending_approval"
    messages = [m.message for m in response.wsgi_request._messages]
    assert any("already decided" in m for m in messages)
    client.force_login(approver2)
    confirm(client, plan, "approve_selected")
    assert Plan.objects.get(pk=plan.pk).status == "approved"


def test_single_plan_page_buttons_lead_to_confirmation(client, agent, portal, approver):
    plan = pending(agent, portal)
    client.force_login(approver)
    page = client.get(f"{CHANGELIST}{plan.pk}/change/")
    assert page.status_code == 200
    assert f"{plan.pk}/decide/approve/" in page.content.decode()
    confirm_page = client.get(f"{CHANGELIST}{plan.pk}/decide/approve/")
    assert confirm_page.status_code == 200 and b"Yes, approve" in confirm_page.content
    done = client.post(f"{CHANGELIST}{plan.pk}/decide/approve/", {"post": "yes", "comment": "ok",
                                                                 f"hash-{plan.pk}": plan.content_hash})
    assert done.status_code == 302
    assert Plan.objects.get(pk=plan.pk).status == "approved"


def test_without_permission_no_action(client, agent, portal, django_user_model):
    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    from django.contrib.auth.models import Permission

    viewer.user_permissions.add(Permission.objects.get(codename="view_plan"))
    portal.approvers.add(viewer)
    plan = pending(agent, portal)
    client.force_login(viewer)
    page = client.get(CHANGELIST)
    assert page.status_code == 200 and b"approve_selected" not in page.content
    confirm(client, plan, "approve_selected")
    assert Plan.objects.get(pk=plan.pk).status == "pending_approval"
    assert client.get(f"{CHANGELIST}{plan.pk}/decide/approve/").status_code == 403


def test_plans_and_audit_cannot_be_added_or_edited(admin_client, agent, portal):
    plan = pending(agent, portal)
    assert admin_client.get(f"{CHANGELIST}add/").status_code == 403
    response = admin_client.post(f"{CHANGELIST}{plan.pk}/change/", {"status": "approved"})
    assert response.status_code == 403
    assert Plan.objects.get(pk=plan.pk).status == "pending_approval"
    assert admin_client.get(f"{CHANGELIST}{plan.pk}/delete/").status_code == 403
    assert admin_client.get("/admin/audit/auditentry/add/").status_code == 403
    from apps.audit.models import AuditEntry

    entry = AuditEntry.objects.first()
    assert admin_client.post(f"/admin/audit/auditentry/{entry.pk}/change/", {"action": "x"}).status_code == 403
    assert admin_client.post(f"/admin/audit/auditentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403


def test_approvers_only_see_their_portals(client, agent, portal, make_approver):
    from apps.portals.services import portal_upsert

    other, _ = portal_upsert(slug="other", base_url="https://other.bitrix24.com", auth_mode="webhook",
                             secrets={"webhook_code": "c"}, fields={"webhook_user_id": "1"})
    plan = pending(agent, portal)
    stranger = make_approver("stranger", portals=[other])
    client.force_login(stranger)
    assert str(plan.pk) not in client.get(CHANGELIST).content.decode()


def test_pending_inbox_lists_only_pending(client, agent, portal, approver):
    waiting = pending(agent, portal)
    done = pending(agent, portal)
    services.plan_decide(plan_id=done.pk, user=approver, decision="reject")
    client.force_login(approver)
    text = client.get("/admin/plans/pendingplan/").content.decode()
    assert str(waiting.pk)[:8] in text and str(done.pk)[:8] not in text


def test_admin_login_goes_through_allauth(client):
    response = client.get("/admin/login/?next=/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_deciding_in_the_admin_needs_a_second_factor_when_required(client, agent, portal, approver, settings):
    settings.APPROVER_MFA_REQUIRED = True
    plan = pending(agent, portal)
    client.force_login(approver)
    response = confirm(client, plan, "approve_selected", "checked")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/2fa/totp/activate/")
    single = client.post(f"{CHANGELIST}{plan.pk}/decide/approve/", {"post": "yes", "comment": "x",
                                                                     f"hash-{plan.pk}": plan.content_hash})
    assert single.status_code == 302 and single["Location"].startswith("/accounts/2fa/totp/activate/")
    assert Plan.objects.get(pk=plan.pk).status == "pending_approval"


def test_a_plans_history_is_its_approval_page(client, agent, portal, approver):
    plan = pending(agent, portal)
    client.force_login(approver)
    response = client.get(f"{CHANGELIST}{plan.pk}/history/")
    assert response.status_code == 302 and response["Location"] == f"/approvals/plans/{plan.pk}/"


def test_the_reject_confirmation_does_not_promise_a_send(client, agent, portal, approver):
    plan = pending(agent, portal)
    client.force_login(approver)
    page = client.post(CHANGELIST, {"action": "reject_selected", "_selected_action": [str(plan.pk)]}).content.decode()
    assert "Nothing will be sent" in page and "exactly what will be sent" not in page
    assert "Waiting for approval" in page and "pending_approval" not in page.split("<form")[0].split("<h2>")[-1]
