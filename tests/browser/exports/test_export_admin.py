"""The exports' admin pages in chromium: the list with a progress bar, rows, rate and time left,
and one export's page. Screenshots go to test-output/screenshots/."""

from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from apps.exports.models import Export
from apps.exports.services import export_submit

pytestmark = pytest.mark.django_db(transaction=True)

SCREENSHOTS = Path(__file__).resolve().parents[3] / "test-output" / "screenshots"


def _shot(page, name):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_admin_shows_export_progress(live_server, new_page, login, portal, make_agent, django_user_model):
    agent = make_agent("exporter", portal=portal)
    running = export_submit(agent=agent, portal=portal, method="crm.lead.list", select=["ID", "TITLE"],
                            filter_={"STATUS_ID": "NEW"}, order={}, fmt="csv").export
    Export.objects.filter(pk=running.pk).update(
        status="running", strategy="id_chain", rows_written=40_000, total_estimate=100_000, active_seconds=10.0,
        requests=16, file_bytes=1_234_567, started_at=timezone.now())
    waiting = export_submit(agent=agent, portal=portal, method="crm.deal.list", select=[], filter_={}, order={},
                            fmt="jsonl").export
    admin_user = django_user_model.objects.create_superuser("root", "root@example.com", "pw-root")

    page = login(new_page(), admin_user)
    page.goto(f"{live_server.url}/admin/exports/export/")
    row = page.locator("#result_list tbody tr", has_text=str(running.pk)[:8])
    expect(row).to_contain_text("40,000 / 100,000")
    expect(row).to_contain_text("4,000 rows/s")
    expect(row).to_contain_text("15 s left")
    expect(row.locator("progress.export-progress")).to_have_attribute("value", "40.0")
    waiting_row = page.locator("#result_list tbody tr", has_text=str(waiting.pk)[:8])
    expect(waiting_row).to_contain_text("Approved, about to run")
    expect(waiting_row.locator(".export-rate")).to_have_text("not started")  # not "— · — left"
    expect(page.locator(".breadcrumbs")).to_have_text("Home › Exports › Exports")
    _shot(page, "exports-admin-list")

    page.locator("#result_list a", has_text=str(running.pk)[:8]).click()
    expect(page.locator("#content")).to_contain_text("crm.lead.list")
    expect(page.locator(".field-progress_bar")).to_contain_text("40.0 %")
    expect(page.locator(".field-request")).to_contain_text('"STATUS_ID": "NEW"')
    expect(page.locator(".field-file_state")).to_contain_text("1,234,567 bytes written so far")
    _shot(page, "exports-admin-detail")


def test_an_approver_stops_a_running_export_from_the_list(live_server, new_page, login, portal, make_agent,
                                                          make_approver):
    from django.contrib.auth.models import Permission

    agent = make_agent("exporter", portal=portal)
    running = export_submit(agent=agent, portal=portal, method="crm.lead.list", select=["ID", "TITLE"],
                            filter_={}, order={}, fmt="csv").export
    Export.objects.filter(pk=running.pk).update(
        status="running", strategy="id_chain", rows_written=40_000, total_estimate=100_000, active_seconds=10.0,
        requests=16, started_at=timezone.now())
    approver = make_approver("alice", portals=[portal])
    approver.user_permissions.add(Permission.objects.get(content_type__app_label="exports", codename="view_export"))

    page = login(new_page(), approver)
    page.goto(f"{live_server.url}/admin/exports/export/")
    row = page.locator("#result_list tbody tr", has_text=str(running.pk)[:8])
    row.locator("input.action-select").check()
    page.locator("select[name=action]").select_option("stop_selected")
    page.locator("button[name=index]").click()
    expect(page.locator(".messagelist")).to_contain_text(
        f"Export {str(running.pk)[:8]} stopped after 40,000 rows; its partial file is removed.")
    expect(page.locator("#result_list tbody tr", has_text=str(running.pk)[:8])).to_contain_text("Cancelled")
    _shot(page, "exports-admin-stopped")
    assert Export.objects.get(pk=running.pk).status == "cancelled"
