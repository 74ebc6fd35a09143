"""The approvers' pages in a real browser: allauth login, the pending-plans inbox, the plan page,
the confirmation page (exactly what will be sent, the content hash, a comment), the changelist
action dropdown, and the two-person rule for destructive plans."""

import json

import pytest
from playwright.sync_api import Page, expect

from apps.plans import services
from apps.plans.choices import ApprovalDecision, PlanStatus
from apps.plans.models import Plan

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

INBOX = "/admin/plans/pendingplan/"
SCREENSHOT = "/tmp/approver-confirmation.png"


def submit(agent, portal, method="crm.lead.add", params=None, reason="") -> Plan:
    params = params if params is not None else {"fields": {"TITLE": "Lead from the web form", "PHONE": "+49 30 1234"}}
    return services.plan_submit(agent=agent, portal=portal, reason=reason,
                                steps=[{"name": "call", "method": method, "params": params}]).plan


def short(plan) -> str:
    return str(plan.pk)[:8]


def expect_confirmation_page(page: Page, plan: Plan, label: str):
    """The confirmation page shows the plan's steps as JSON and its content hash."""
    expect(page.get_by_role("heading", name=f"{label}: are you sure?")).to_be_visible()
    block = page.locator(f"#plan-{plan.pk}")
    expect(block.locator("pre.plan-steps")).to_contain_text(plan.steps[0]["method"])
    assert json.loads(block.locator("pre.plan-steps").inner_text()) == plan.steps
    expect(block.locator("code")).to_have_text(plan.content_hash)
    expect(page.locator(f'input[name="hash-{plan.pk}"]')).to_have_value(plan.content_hash)


def approve_on_plan_page(page: Page, live_server, plan: Plan, comment: str):
    """Open the plan, press Approve, check the confirmation, type a comment and confirm."""
    page.goto(f"{live_server.url}/admin/plans/plan/{plan.pk}/change/")
    page.get_by_role("link", name="Approve", exact=True).click()
    expect(page).to_have_url(f"{live_server.url}/admin/plans/plan/{plan.pk}/decide/approve/")
    expect_confirmation_page(page, plan, "Approve")
    page.get_by_label("Comment").fill(comment)
    page.get_by_role("button", name="Yes, approve").click()
    expect(page).to_have_url(f"{live_server.url}/admin/plans/plan/{plan.pk}/change/")


def test_approver_logs_in_and_approves_from_the_inbox(live_server, new_page, login, portal, make_agent,
                                                      make_approver):
    agent = make_agent("sales-bot", portal=portal)
    alice = make_approver("alice", portals=[portal])
    plan = submit(agent, portal, reason="new lead from the web form")
    assert plan.status == PlanStatus.PENDING_APPROVAL

    page = login(new_page(), alice)

    # The inbox, reached from the admin index as a person would.
    page.get_by_role("link", name="Pending plans").first.click()
    expect(page).to_have_url(f"{live_server.url}{INBOX}")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("sales-bot")
    expect(rows.first).to_contain_text("crm.lead.add")
    expect(rows.first).to_contain_text("0/1")

    # The plan page shows exactly what will be sent.
    rows.first.get_by_role("link", name=short(plan)).click()
    expect(page).to_have_url(f"{live_server.url}/admin/plans/plan/{plan.pk}/change/")
    steps = page.locator(".field-steps_pretty pre")
    expect(steps).to_contain_text('"method": "crm.lead.add"')
    expect(steps).to_contain_text('"TITLE": "Lead from the web form"')
    assert json.loads(steps.inner_text()) == plan.steps

    # Approve → confirmation page with the steps and the hash → comment → confirm.
    page.get_by_role("link", name="Approve", exact=True).click()
    expect(page).to_have_url(f"{live_server.url}/admin/plans/plan/{plan.pk}/decide/approve/")
    expect_confirmation_page(page, plan, "Approve")
    expect(page.get_by_text("new lead from the web form")).to_be_visible()
    page.screenshot(path=SCREENSHOT, full_page=True)
    page.get_by_label("Comment").fill("checked with sales")
    page.get_by_role("button", name="Yes, approve").click()

    expect(page).to_have_url(f"{live_server.url}/admin/plans/plan/{plan.pk}/change/")
    expect(page.locator(".messagelist .success")).to_have_text(f"Plan {short(plan)}: Approved, about to run.")
    expect(page.locator(".field-status .readonly")).to_have_text("Approved, about to run")
    expect(page.get_by_role("link", name="Approve", exact=True)).to_have_count(0)

    plan.refresh_from_db()
    assert plan.status == PlanStatus.APPROVED
    approval = plan.approvals.get()
    assert (approval.user_id, approval.decision, approval.comment) == (
        alice.pk, ApprovalDecision.APPROVE, "checked with sales")
    assert approval.content_hash == plan.content_hash

    # It has left the inbox.
    page.goto(f"{live_server.url}{INBOX}")
    expect(page.locator("#result_list")).to_have_count(0)
    expect(page.get_by_text("0 pending plans")).to_be_visible()


def test_reject_through_the_changelist_action(live_server, new_page, login, portal, make_agent, make_approver):
    agent = make_agent("sales-bot", portal=portal)
    alice = make_approver("alice", portals=[portal])
    wrong = submit(agent, portal, params={"fields": {"TITLE": "Duplicate lead"}})
    other = submit(agent, portal, params={"fields": {"TITLE": "Real lead"}})

    page = login(new_page(), alice)
    page.goto(f"{live_server.url}{INBOX}")
    expect(page.locator("#result_list tbody tr")).to_have_count(2)

    page.locator(f'input.action-select[value="{wrong.pk}"]').check()
    expect(page.locator(".action-counter")).to_contain_text("1 of 2 selected")
    page.locator("select[name=action]").select_option(label="Reject selected plans")
    page.get_by_role("button", name="Go").click()

    expect_confirmation_page(page, wrong, "Reject")
    expect(page.locator(f"#plan-{other.pk}")).to_have_count(0)  # only what was selected
    page.get_by_label("Comment").fill("duplicate of an existing lead")
    page.get_by_role("button", name="Yes, reject").click()

    expect(page).to_have_url(f"{live_server.url}{INBOX}")
    expect(page.locator(".messagelist .success")).to_have_text(f"Plan {short(wrong)}: Rejected.")
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    expect(page.locator(f'input.action-select[value="{other.pk}"]')).to_have_count(1)

    wrong.refresh_from_db()
    other.refresh_from_db()
    assert wrong.status == PlanStatus.REJECTED
    assert other.status == PlanStatus.PENDING_APPROVAL
    rejection = wrong.approvals.get()
    assert (rejection.user_id, rejection.decision, rejection.comment) == (
        alice.pk, ApprovalDecision.REJECT, "duplicate of an existing lead")


def test_destructive_plan_needs_two_distinct_approvers(live_server, new_page, login, portal, make_agent,
                                                      make_approver):
    agent = make_agent("cleanup-bot", portal=portal)
    alice = make_approver("alice", portals=[portal])
    bob = make_approver("bob", portals=[portal])
    plan = submit(agent, portal, method="crm.lead.delete", params={"id": 7})
    assert plan.approvals_required == 2

    # Alice approves: one of two, still pending. (She also left the confirmation open in a second tab.)
    alice_page = login(new_page(), alice)
    alice_page.goto(f"{live_server.url}/admin/plans/plan/{plan.pk}/decide/approve/")
    expect(alice_page.get_by_text("Needs 2 approvals")).to_be_visible()
    stale_tab = alice_page.context.new_page()
    stale_tab.goto(f"{live_server.url}/admin/plans/plan/{plan.pk}/decide/approve/")
    approve_on_plan_page(alice_page, live_server, plan, "ok to delete")
    expect(alice_page.locator(".messagelist .success")).to_have_text(f"Plan {short(plan)}: Waiting for approval.")
    assert Plan.objects.get(pk=plan.pk).status == PlanStatus.PENDING_APPROVAL
    alice_page.goto(f"{live_server.url}{INBOX}")
    expect(alice_page.locator("#result_list tbody tr").first).to_contain_text("1/2")

    # Alice again: her plan page offers no Approve button any more (the service would refuse her),
    # and confirming in the stale tab is refused: still pending, still one approval.
    alice_page.goto(f"{live_server.url}/admin/plans/plan/{plan.pk}/change/")
    expect(alice_page.locator(".field-status .readonly")).to_have_text("Waiting for approval")
    expect(alice_page.get_by_role("link", name="Approve", exact=True)).to_have_count(0)
    stale_tab.get_by_label("Comment").fill("me again")
    stale_tab.get_by_role("button", name="Yes, approve").click()
    expect(stale_tab.locator(".messagelist .error")).to_contain_text("already decided")
    expect(stale_tab.locator(".messagelist .success")).to_have_count(0)
    assert Plan.objects.get(pk=plan.pk).status == PlanStatus.PENDING_APPROVAL
    assert plan.approvals.count() == 1

    # Bob, in his own browser context, makes it two.
    bob_page = login(new_page(), bob)
    approve_on_plan_page(bob_page, live_server, plan, "second pair of eyes")
    expect(bob_page.locator(".messagelist .success")).to_have_text(f"Plan {short(plan)}: Approved, about to run.")

    plan.refresh_from_db()
    assert plan.status == PlanStatus.APPROVED
    assert sorted(plan.approvals.values_list("user__username", "comment")) == [
        ("alice", "ok to delete"), ("bob", "second pair of eyes")]

    # Alice's page, reloaded, shows the outcome too.
    alice_page.reload()
    expect(alice_page.locator(".field-status .readonly")).to_have_text("Approved, about to run")
