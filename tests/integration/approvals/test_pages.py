"""The approvers' inbox and plan page through the Django test client: who sees what, one-click
and bulk decisions, the MFA gate, and the before → after preview read from a sandbox portal."""

import json

import pytest
from django.urls import reverse

from apps.approvals.models import PlanPreview
from apps.plans.models import Plan
from apps.plans.services import plan_decide, plan_submit

DELETE = [{"name": "call", "method": "crm.deal.delete", "params": {"id": 7}}]
UPDATE = [{"name": "call", "method": "crm.lead.update", "params": {"id": 42, "fields": {"TITLE": "paid"}}}]


@pytest.fixture(autouse=True)
def no_mfa(settings):
    settings.APPROVER_MFA_REQUIRED = False


@pytest.fixture
def pending(agent, portal):
    return plan_submit(agent=agent, portal=portal, steps=UPDATE, reason="Customer paid").plan


def login(client, user):
    client.force_login(user)
    return client


def test_login_lands_on_the_inbox(settings):
    assert settings.LOGIN_REDIRECT_URL == "/approvals/"


def test_anonymous_is_sent_to_allauth_login(client):
    answer = client.get("/approvals/")
    assert answer.status_code == 302 and answer["Location"].startswith("/accounts/login/")


def test_a_user_without_the_permission_gets_403(client, django_user_model):
    user = django_user_model.objects.create_user("nobody", password="x")
    assert login(client, user).get("/approvals/").status_code == 403


def test_inbox_row_shows_risk_summary_reason_and_progress(client, approver, pending):
    html = login(client, approver).get("/approvals/").content.decode()
    assert 'id="waiting-on-you"' in html
    assert 'class="badge badge-write">Write<' in html
    assert "Update lead #42: set TITLE to &#x27;paid&#x27;" in html
    assert "Customer paid" in html
    assert "0 of 1 approval" in html
    assert f'value="{pending.pk}"' in html  # selectable for bulk


def test_waiting_on_you_first_then_others(client, make_agent, portal, approver, approver2):
    owned = make_agent("owned", portal=portal, owner=approver)
    mine = plan_submit(agent=make_agent("b", portal=portal), portal=portal, steps=UPDATE).plan
    theirs = plan_submit(agent=owned, portal=portal, steps=UPDATE).plan
    html = login(client, approver).get("/approvals/").content.decode()
    you, _, others = html.partition('id="waiting-on-others"')
    assert str(mine.pk) in you and str(theirs.pk) not in you
    assert str(theirs.pk) in others


def test_a_superuser_not_on_the_approver_list_sees_no_buttons(client, django_user_model, pending):
    boss = django_user_model.objects.create_superuser("boss", password="x")
    html = login(client, boss).get("/approvals/").content.decode()
    assert 'id="waiting-on-you"' not in html
    page = client.get(reverse("approvals:plan", args=[pending.pk])).content.decode()
    assert 'id="approve-button"' not in page
    assert "You are not an approver on this portal." in page
    answer = client.post(reverse("approvals:decide", args=[pending.pk]), {"decision": "approve"})
    assert answer.status_code == 302
    assert Plan.objects.get(pk=pending.pk).status == "pending_approval"


def test_filters_by_risk_portal_and_agent(client, approver, agent, portal):
    plan_submit(agent=agent, portal=portal, steps=UPDATE).plan
    delete = plan_submit(agent=agent, portal=portal, steps=DELETE).plan
    login(client, approver)
    html = client.get("/approvals/?risk=destructive").content.decode()
    assert str(delete.pk) in html and "Update lead" not in html
    assert "Update lead" not in client.get("/approvals/?agent=nobody").content.decode()
    assert "Update lead" in client.get(f"/approvals/?portal={portal.slug}").content.decode()


def test_plan_page_in_human_terms(client, approver, pending):
    html = login(client, approver).get(reverse("approvals:plan", args=[pending.pk])).content.decode()
    shown = html.split('data-poll-value=')[1].split("Raw JSON")[0].split(">", 1)[1]
    assert "Waiting for approval" in shown and "pending_approval" not in shown
    assert "1. Update lead #42: set TITLE to &#x27;paid&#x27;" in html
    assert 'id="raw-json"' in html and "crm.lead.update" in html
    assert "An agent submitted a plan" in html and "Submitted → Waiting for approval" in html  # the audit trail
    assert "UTC" in html  # the zone is shown
    assert 'id="approve-button"' in html and 'id="reject-button"' in html


def test_times_follow_the_approvers_zone(client, approver, pending):
    approver.time_zone = "Europe/Berlin"
    approver.save()
    html = login(client, approver).get(reverse("approvals:plan", args=[pending.pk])).content.decode()
    assert "Europe/Berlin" in html
    client.cookies["tz"] = "Asia/Tokyo"
    approver.time_zone = ""
    approver.save()
    assert "Asia/Tokyo" in client.get(reverse("approvals:plan", args=[pending.pk])).content.decode()


def test_another_agents_or_portals_plan_is_404(client, make_approver, pending):
    stranger = make_approver("stranger")
    login(client, stranger)
    assert client.get(reverse("approvals:plan", args=[pending.pk])).status_code == 404
    assert client.get("/approvals/plans/not-a-uuid/").status_code == 404


def test_one_click_approve(client, approver, pending, django_capture_on_commit_callbacks):
    login(client, approver)
    with django_capture_on_commit_callbacks() as queued:
        answer = client.post(reverse("approvals:decide", args=[pending.pk]),
                             {"decision": "approve", "seen_hash": pending.content_hash}, follow=True)
    assert Plan.objects.get(pk=pending.pk).status == "approved"
    assert "Approved: the plan runs now." in answer.content.decode()
    assert queued  # execution queued on commit


def test_reject_needs_a_reason_that_the_agent_then_reads(client, approver, agent, pending):
    login(client, approver)
    answer = client.post(reverse("approvals:decide", args=[pending.pk]), {"decision": "reject"}, follow=True)
    assert "Say why you reject it" in answer.content.decode()
    assert Plan.objects.get(pk=pending.pk).status == "pending_approval"
    client.post(reverse("approvals:decide", args=[pending.pk]), {"decision": "reject", "comment": "Wrong lead"})
    api = client.get(f"/api/v1/plans/{pending.pk}", headers={"Authorization": f"Bearer {agent.token}"}).json()
    assert api["status"] == "rejected"
    assert api["approvals"][0]["comment"] == "Wrong lead"


def test_a_changed_plan_hash_is_refused(client, approver, pending):
    login(client, approver)
    answer = client.post(reverse("approvals:decide", args=[pending.pk]),
                         {"decision": "approve", "seen_hash": "0" * 64}, follow=True)
    assert "reload it before deciding" in answer.content.decode()
    assert Plan.objects.get(pk=pending.pk).status == "pending_approval"


def test_bulk_approve_goes_through_one_confirmation(client, approver, agent, portal):
    plans = [plan_submit(agent=agent, portal=portal, steps=UPDATE).plan for _ in range(3)]
    login(client, approver)
    data = {"decision": "approve", "plan": [str(p.pk) for p in plans[:2]],
            "seen_hash": [p.content_hash for p in plans[:2]]}
    confirm = client.post(reverse("approvals:bulk"), data)
    assert confirm.status_code == 200 and b"Yes, approve 2 plans" in confirm.content
    assert Plan.objects.filter(status="approved").count() == 0
    client.post(reverse("approvals:bulk"), {**data, "confirm": "yes"})
    assert sorted(Plan.objects.filter(status="approved").values_list("pk", flat=True)) == sorted(
        p.pk for p in plans[:2])


def test_bulk_reject_needs_a_reason(client, approver, agent, portal):
    plan = plan_submit(agent=agent, portal=portal, steps=UPDATE).plan
    login(client, approver)
    client.post(reverse("approvals:bulk"), {"decision": "reject", "plan": [str(plan.pk)], "confirm": "yes"})
    assert Plan.objects.get(pk=plan.pk).status == "pending_approval"


def test_the_two_person_rule_shows_progress(client, approver, approver2, make_agent, portal):
    agent = make_agent("d", portal=portal)
    plan = plan_submit(agent=agent, portal=portal, steps=DELETE).plan
    plan_decide(plan_id=plan.pk, user=approver, decision="approve")
    login(client, approver)
    html = client.get("/approvals/").content.decode()
    assert "1 of 2 approvals" in html.partition('id="waiting-on-others"')[2]
    login(client, approver2)
    assert "1 of 2 approvals" in client.get("/approvals/").content.decode().partition(
        'id="waiting-on-others"')[0]


def test_state_endpoints_change_when_a_plan_is_decided(client, approver, approver2, make_agent, portal):
    plan = plan_submit(agent=make_agent("d", portal=portal), portal=portal, steps=DELETE).plan
    login(client, approver2)
    before = client.get(reverse("approvals:inbox_state")).json()["fingerprint"]
    state = client.get(reverse("approvals:plan_state", args=[plan.pk])).json()
    plan_decide(plan_id=plan.pk, user=approver, decision="approve")
    assert client.get(reverse("approvals:inbox_state")).json()["fingerprint"] != before
    assert client.get(reverse("approvals:plan_state", args=[plan.pk])).json()["decisions"] == state["decisions"] + 1


def test_mfa_gate_sends_an_approver_without_a_second_factor_to_set_it_up(client, settings, approver, pending):
    settings.APPROVER_MFA_REQUIRED = True
    login(client, approver)
    answer = client.post(reverse("approvals:decide", args=[pending.pk]), {"decision": "approve"})
    assert answer.status_code == 302 and answer["Location"].startswith(reverse("mfa_activate_totp"))
    assert Plan.objects.get(pk=pending.pk).status == "pending_approval"


def test_mfa_gate_lets_a_session_that_passed_mfa_decide(client, settings, approver, pending):
    from allauth.account.authentication import AUTHENTICATION_METHODS_SESSION_KEY

    settings.APPROVER_MFA_REQUIRED = True
    login(client, approver)
    session = client.session
    session["account_authentication_methods_user"] = str(approver.pk)
    session[AUTHENTICATION_METHODS_SESSION_KEY] = [{"method": "password", "at": 0}, {"method": "mfa", "at": 0,
                                                                                      "type": "totp"}]
    session.save()
    client.post(reverse("approvals:decide", args=[pending.pk]), {"decision": "approve"})
    assert Plan.objects.get(pk=pending.pk).status == "approved"


# --- before → after, read from a sandbox portal over HTTP -----------------------------------------

@pytest.fixture
def sandbox_portal(make_sandbox_portal):
    return make_sandbox_portal("pv")

def test_update_preview_shows_old_and_new_and_the_agent_sees_changes(
        client, sandbox_portal, make_agent, make_approver, celery_drain):
    from apps.bitrix.client import BitrixClient

    lead_id = BitrixClient(sandbox_portal).call("crm.lead.add", {"fields": {"TITLE": "ACME order"}}).result
    agent = make_agent("pv-agent", portal=sandbox_portal)
    approver = make_approver("pv-approver", portals=[sandbox_portal])
    answer = client.post("/api/v1/plans", data=json.dumps({
        "portal": "pv", "method": "crm.lead.update",
        "params": {"id": lead_id, "fields": {"TITLE": "ACME order (paid)", "NO_SUCH": "x"}}}),
        content_type="application/json", headers={"Authorization": f"Bearer {agent.token}"})
    assert answer.status_code == 201, answer.content
    plan_id = answer.json()["id"]
    ran = celery_drain()
    assert sorted(name for name, *_ in ran) == ["apps.approvals.tasks.notify_portal_pending",
                                                "apps.approvals.tasks.read_preimages"]
    assert PlanPreview.objects.get(plan_id=plan_id).steps["call"]["before"]["TITLE"] == "ACME order"
    changes = client.get(f"/api/v1/plans/{plan_id}", headers={"Authorization": f"Bearer {agent.token}"}).json()[
        "changes"]
    assert changes == [{"step": "call", "entity": "lead", "key": {"id": lead_id}, "action": "update", "fields": {
        "TITLE": {"before": "ACME order", "after": "ACME order (paid)", "exists": True},
        "NO_SUCH": {"before": None, "after": "x", "exists": False}}}]
    login(client, approver)
    html = client.get(reverse("approvals:plan", args=[plan_id])).content.decode()
    assert (f"Update lead #{lead_id} &#x27;ACME order&#x27;: TITLE &#x27;ACME order&#x27; → "
            "&#x27;ACME order (paid)&#x27;") in html
    assert "no such field on this record" in html
