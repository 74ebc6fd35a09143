"""The admin's list of what approvers were told (Notices), in chromium: each notice's channel,
status and round, a failure's reason, and the status filter, including `sending` (a Bitrix24
digest has taken it). Screenshot: test-output/screenshots/notices-admin-list.png."""

from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from apps.approvals.models import Notice
from apps.plans.services import plan_submit

pytestmark = pytest.mark.django_db(transaction=True)

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
UPDATE = [{"name": "call", "method": "crm.lead.update", "params": {"id": 42, "fields": {"TITLE": "paid"}}}]


def test_admin_lists_notices_with_their_status_and_failures(live_server, new_page, login, portal, make_agent,
                                                           make_approver, django_user_model, monkeypatch):
    from apps.approvals import tasks

    monkeypatch.setattr(tasks.notify_portal_pending, "apply_async", lambda *a, **kw: None)
    monkeypatch.setattr(tasks.read_preimages, "delay", lambda *a: None)
    agent = make_agent("writer", portal=portal)
    alice, bob = make_approver("alice", portals=[portal]), make_approver("bob", portals=[portal])
    plan = plan_submit(agent=agent, portal=portal, steps=UPDATE).plan
    now = timezone.now()
    Notice.objects.bulk_create([
        Notice(user=alice, plan=plan, kind="pending", channel="email", status="sent", sent_at=now),
        Notice(user=alice, plan=plan, kind="pending", channel="bitrix", status="sending", sent_at=now),
        Notice(user=bob, plan=plan, kind="pending", channel="bitrix", status="failed", error="user not found"),
        Notice(user=bob, plan=plan, kind="reminder", channel="email", status="queued", round=1),
    ])
    root = django_user_model.objects.create_superuser("root", "root@example.com", "pw-root")

    page = login(new_page(), root)
    page.goto(f"{live_server.url}/admin/approvals/notice/")
    rows = page.locator("#result_list tbody tr")
    expect(rows).to_have_count(4)
    failed = rows.filter(has_text="user not found")
    expect(failed).to_contain_text("bob")
    expect(failed.locator("td.field-status_value")).to_have_text("failed")
    expect(rows.filter(has=page.locator("td.field-status_value", has_text="sending"))).to_contain_text("alice")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "notices-admin-list.png"), full_page=True)
    for column in ("status_value", "error"):  # the list fits the window: nothing to scroll to
        expect(page.locator(f"#result_list th.column-{column}")).to_be_in_viewport(ratio=1)

    page.locator("#changelist-filter a", has_text="Sending (a digest took it)").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("alice")
    rows.first.locator("a", has_text=str(plan.pk)[:8]).click()  # the plan's own page
    expect(page.locator("#content")).to_contain_text(str(plan.pk))
