"""The approvers' inbox and plan page in a real browser (Debian chromium through Playwright):
login lands on the inbox, a plan in human terms with its diff, one-click decisions, the
two-person rule, a rejection the agent reads, the inbox refreshing itself, and MFA set-up and
login. Every page visited is saved as a screenshot under test-output/screenshots/."""

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.core.cache import cache
from playwright.sync_api import Page, expect

from apps.approvals.models import PlanPreview
from apps.plans.models import Plan
from apps.plans.services import plan_decide, plan_submit

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
UPDATE = [{"name": "call", "method": "crm.lead.update", "params": {"id": 42, "fields": {"TITLE": "ACME order (paid)",
                                                                                         "STAGE": "x"}}}]
DELETE = [{"name": "call", "method": "crm.deal.delete", "params": {"id": 7}}]


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture(autouse=True)
def no_mfa_by_default(settings):
    settings.APPROVER_MFA_REQUIRED = False
    return settings


@pytest.fixture
def sign_in(live_server):
    """Log in from allauth's login page, as a person does, and land on the inbox."""

    def do(page: Page, user, password=None, *, lands="/approvals/"):
        page.goto(f"{live_server.url}/accounts/login/")
        page.locator("input[name=login]").fill(user.username)
        page.locator("input[name=password]").fill(password or f"pw-{user.username}")
        page.get_by_role("button", name="Sign In").click()
        if lands:
            expect(page).to_have_url(f"{live_server.url}{lands}")
        return page

    return do


def with_preview(plan, before):
    PlanPreview.objects.create(plan=plan, steps={"call": {"entity": "lead", "read": "crm.lead.get",
                                                          "key": {"id": 42}, "before": before}})


def test_inbox_to_plan_page_to_one_click_approve(live_server, new_page, sign_in, portal, make_agent, make_approver):
    agent = make_agent("sales-bot", portal=portal)
    alice = make_approver("alice", portals=[portal])
    plan = plan_submit(agent=agent, portal=portal, steps=UPDATE, reason="The customer paid the invoice").plan
    with_preview(plan, {"ID": "42", "TITLE": "ACME order", "OPPORTUNITY": "1200"})
    plan_submit(agent=agent, portal=portal, steps=DELETE, reason="Duplicate deal").plan

    page = sign_in(new_page(), alice)
    expect(page.get_by_role("heading", name="Waiting on you (2)")).to_be_visible()
    row = page.locator(f"#row-{plan.pk}")
    expect(row.locator(".badge")).to_have_text("Write")
    expect(row).to_contain_text("Update lead #42 'ACME order': TITLE 'ACME order' → 'ACME order (paid)'")
    expect(row).to_contain_text("The customer paid the invoice")
    expect(row).to_contain_text("0 of 1 approval")
    expect(page.locator(".badge-destructive")).to_have_text("Destructive")
    shot(page, "01-inbox")

    row.get_by_role("link").click()
    expect(page).to_have_url(f"{live_server.url}/approvals/plans/{plan.pk}/")
    expect(page.locator("#plan-status")).to_have_text("Waiting for approval")
    diff = page.locator("#step-call table.diff")
    expect(diff).to_contain_text("ACME order (paid)")
    expect(diff).to_contain_text("no such field on this record")  # STAGE is not a lead field
    expect(page.locator("#raw-json")).to_be_hidden()
    page.get_by_text("Raw JSON: exactly what will be sent").click()
    expect(page.locator("#raw-json")).to_contain_text("crm.lead.update")
    shot(page, "02-plan-page-update-diff")

    page.locator("#approve-button").click()
    expect(page.locator("ul.messagelist")).to_contain_text("Approved: the plan runs now.")
    expect(page.locator("#plan-status")).to_have_text("Approved, about to run")
    expect(page.locator("#approve-button")).to_have_count(0)
    shot(page, "03-plan-approved")
    assert Plan.objects.get(pk=plan.pk).status == "approved"


def test_destructive_plan_needs_two_people(live_server, new_page, sign_in, portal, make_agent, make_approver):
    agent = make_agent("cleanup-bot", portal=portal)
    alice = make_approver("alice", portals=[portal])
    bob = make_approver("bob", portals=[portal])
    plan = plan_submit(agent=agent, portal=portal, steps=DELETE, reason="Duplicate deal").plan
    PlanPreview.objects.create(plan=plan, steps={"call": {"entity": "deal", "read": "crm.deal.get", "key": {"id": 7},
                                                          "before": {"TITLE": "Big deal", "OPPORTUNITY": "12000",
                                                                     "CURRENCY_ID": "USD", "ASSIGNED_BY_ID": "3"}}})

    page = sign_in(new_page(), alice)
    page.locator(f"#row-{plan.pk} a").click()
    expect(page.locator("#step-call h3")).to_have_text("1. Delete deal #7 'Big deal', 12,000 USD, owner user #3")
    shot(page, "04-plan-page-delete")
    page.locator("#approve-button").click()
    expect(page.locator("ul.messagelist")).to_contain_text("it still needs another approver")
    expect(page.locator("#no-decision")).to_have_text("You have decided; another approver is needed.")
    shot(page, "05-first-of-two-approvals")

    second = sign_in(new_page(), bob)
    expect(second.locator(f"#row-{plan.pk}")).to_contain_text("1 of 2 approvals")
    second.locator(f"#row-{plan.pk} a").click()
    second.locator("#approve-button").click()
    expect(second.locator("#plan-status")).to_have_text("Approved, about to run")
    shot(second, "06-second-approval")
    # alice's page refreshes itself when bob's decision lands
    expect(page.locator("#plan-status")).to_have_text("Approved, about to run", timeout=12_000)


def test_rejection_with_a_reason_the_agent_reads(live_server, new_page, sign_in, portal, make_agent, make_approver,
                                                 client):
    agent = make_agent("sales-bot", portal=portal)
    alice = make_approver("alice", portals=[portal])
    plan = plan_submit(agent=agent, portal=portal, steps=UPDATE, reason="Looks paid").plan
    page = sign_in(new_page(), alice)
    page.goto(f"{live_server.url}/approvals/plans/{plan.pk}/")
    page.locator("#reject-button").click()
    expect(page.locator("ul.messagelist")).to_contain_text("Say why you reject it")
    page.get_by_label("Comment (required to reject: the agent reads it)").fill("Invoice 17 is still open")
    page.locator("#reject-button").click()
    expect(page.locator("#plan-status")).to_have_text("Rejected")
    shot(page, "07-rejected")
    # The plan view is async; Playwright's sync API keeps an event loop in this thread, where Django's
    # test client cannot run one: ask from another thread.
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(lambda: client.get(f"/api/v1/plans/{plan.pk}",
                                                headers={"Authorization": f"Bearer {agent.token}"}).json()).result()
    assert answer["status"] == "rejected"
    assert answer["approvals"][0]["comment"] == "Invoice 17 is still open"


def test_bulk_approve_and_the_inbox_refreshes_itself(live_server, new_page, sign_in, portal, make_agent,
                                                     make_approver):
    agent = make_agent("sales-bot", portal=portal)
    alice = make_approver("alice", portals=[portal])
    first = plan_submit(agent=agent, portal=portal, steps=UPDATE).plan
    page = sign_in(new_page(), alice)
    expect(page.locator(f"#row-{first.pk}")).to_be_visible()
    second = plan_submit(agent=agent, portal=portal, steps=UPDATE, reason="arrived while the page was open").plan
    expect(page.locator(f"#row-{second.pk}")).to_be_visible(timeout=12_000)
    page.locator(f"#row-{first.pk} input[type=checkbox]").check()
    page.locator(f"#row-{second.pk} input[type=checkbox]").check()
    page.get_by_role("button", name="Approve selected…").click()
    expect(page.get_by_role("heading", name="Approve 2 plans?")).to_be_visible()
    shot(page, "08-bulk-confirmation")
    page.locator("#confirm-bulk").click()
    expect(page.locator("ul.messagelist")).to_contain_text("Approved 2 plans.")
    expect(page.locator("#nothing-waiting")).to_be_visible()
    shot(page, "09-inbox-empty")


def test_mfa_set_up_then_decide_then_login_with_a_code(live_server, new_page, sign_in, portal, make_agent,
                                                       make_approver, no_mfa_by_default):
    from allauth.mfa import app_settings as mfa_settings
    from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value

    def code(secret):
        # allauth accepts only the current 30 s window (TOTP_TOLERANCE 0). A code taken in a window's
        # last seconds can reach the server in the next one and be refused, so wait the window out.
        period = mfa_settings.TOTP_PERIOD
        if period - time.time() % period < 8:
            time.sleep(period - time.time() % period + 0.1)
        return format_hotp_value(hotp_value(secret, int(time.time()) // period))

    no_mfa_by_default.APPROVER_MFA_REQUIRED = True
    agent = make_agent("sales-bot", portal=portal)
    alice = make_approver("alice", portals=[portal])
    plan = plan_submit(agent=agent, portal=portal, steps=UPDATE).plan
    page = sign_in(new_page(), alice)
    page.goto(f"{live_server.url}/approvals/plans/{plan.pk}/")
    page.locator("#approve-button").click()
    # allauth asks for the password again before adding an authenticator
    expect(page).to_have_url(re.compile(r"/accounts/reauthenticate/\?next=%2Faccounts%2F2fa%2Ftotp%2Factivate%2F"))
    page.locator("input[name=password]").fill("pw-alice")
    page.get_by_role("button", name="Confirm").click()
    expect(page).to_have_url(re.compile(r"/accounts/2fa/totp/activate/"))
    shot(page, "10-mfa-setup")
    secret = page.locator("#authenticator_secret").input_value()
    page.locator("input[name=code]").fill(code(secret))
    page.get_by_role("button", name="Activate").click()
    assert Plan.objects.get(pk=plan.pk).status == "pending_approval"

    # the session has not passed a second factor yet: confirm with a code, then decide
    cache.clear()
    page.goto(f"{live_server.url}/approvals/plans/{plan.pk}/")
    page.locator("#approve-button").click()
    expect(page).to_have_url(re.compile(r"/accounts/reauthenticate/|/accounts/2fa/reauthenticate/"))
    shot(page, "11-mfa-reauthenticate")
    page.locator("input[name=code]").fill(code(secret))
    page.get_by_role("button", name=re.compile("Confirm", re.I)).click()
    page.goto(f"{live_server.url}/approvals/plans/{plan.pk}/")
    page.locator("#approve-button").click()
    expect(page.locator("#plan-status")).to_have_text("Approved, about to run")

    # a new login asks for the code after the password and lands on the inbox
    cache.clear()
    other = sign_in(new_page(), alice, lands=None)
    expect(other).to_have_url(re.compile(r"/accounts/2fa/authenticate/"))
    shot(other, "12-mfa-login")
    other.locator("input[name=code]").fill(code(secret))
    other.get_by_role("button", name=re.compile("Sign In", re.I)).click()
    expect(other).to_have_url(f"{live_server.url}/approvals/")


def test_the_agents_answer_for_a_decided_plan_is_consistent(db, agent, portal, approver):
    plan = plan_submit(agent=agent, portal=portal, steps=UPDATE).plan
    plan_decide(plan_id=plan.pk, user=approver, decision="approve")
    assert json.loads(json.dumps(Plan.objects.get(pk=plan.pk).steps)) == UPDATE


@pytest.fixture
def sandbox_world(make_sandbox_portal, make_agent, make_approver):
    from apps.bitrix.client import BitrixClient

    portal = make_sandbox_portal("br")
    agent = make_agent("crm-bot", portal=portal)
    alice = make_approver("alice", portals=[portal])
    return portal, agent, alice, BitrixClient(portal)


def test_a_stale_plan_comes_back_and_an_executed_update_is_reverted(live_server, new_page, sign_in, sandbox_world,
                                                                     celery_drain):
    portal, agent, alice, portal_client = sandbox_world
    lead = portal_client.call("crm.lead.add", {"fields": {"TITLE": "ACME order"}}).result
    plan = plan_submit(agent=agent, portal=portal, reason="The customer paid", steps=[
        {"name": "call", "method": "crm.lead.update", "params": {"id": lead, "fields": {"TITLE": "ACME (paid)"}}}]).plan
    celery_drain()  # the pre-image

    page = sign_in(new_page(), alice)
    page.goto(f"{live_server.url}/approvals/plans/{plan.pk}/")
    page.locator("#approve-button").click()
    expect(page.locator("#plan-status")).to_have_text("Approved, about to run")
    portal_client.call("crm.lead.update", {"id": lead, "fields": {"TITLE": "ACME (cancelled)"}})
    celery_drain()  # the executor finds the change and sends nothing
    page.reload()
    expect(page.locator("#plan-status")).to_have_text("Waiting for approval")
    notice = page.locator("#changed-notice")
    expect(notice).to_contain_text("TITLE was ACME order, is now ACME (cancelled)")
    expect(page.locator("#step-call h3")).to_contain_text("TITLE 'ACME (cancelled)' → 'ACME (paid)'")
    shot(page, "13-stale-plan-back-for-approval")

    page.locator("#approve-button").click()
    celery_drain()
    page.reload()
    expect(page.locator("#plan-status")).to_have_text("Done")
    shot(page, "14-executed-update-offers-revert")
    page.locator("#revert-button").click()
    expect(page.locator("ul.messagelist")).to_contain_text("puts the old values back")
    expect(page.locator("#step-call h3")).to_contain_text(f"Update lead #{lead}")
    expect(page.locator("#step-call h3")).to_contain_text("set TITLE to 'ACME (cancelled)'")
    shot(page, "15-revert-plan")
