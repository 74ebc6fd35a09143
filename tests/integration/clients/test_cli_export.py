"""`b24cp export` / `export-status` against a live plane and its sandbox portal: submit, progress
bar on stderr, download, exit codes."""

import json

import pytest

from clients.b24cp import Client
from clients.b24cp.cli import main, progress_line
from tests.integration.exports.seed import seed_leads

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cli(live_server, plane_agent, capsys, settings, tmp_path):
    settings.EXPORTS_DIR = str(tmp_path / "exports")

    def run(*argv):
        code = main(["--json", *argv], client=Client(live_server.url, plane_agent.token))
        captured = capsys.readouterr()
        return code, json.loads(captured.out) if captured.out.strip() else None, captured.err

    return run


def test_export_then_status_downloads_the_file_with_a_progress_bar(cli, sandbox_portal, celery_drain, tmp_path):
    from apps.sandbox.models import SandboxPortal

    seed_leads(SandboxPortal.objects.get(slug="demo"), 120)
    code, export, err = cli("export", "crm.lead.list", "--portal", "demo", "--select", "ID,TITLE", "--format", "csv",
                            "--timeout", "0")
    assert code == 3 and export["status"] == "queued" and export["format"] == "csv"
    assert "(queued)" in err
    for _ in range(5):
        celery_drain()
    out = tmp_path / "leads.csv"
    code, done, err = cli("export-status", export["id"], "--output", str(out), "--timeout", "5", "--interval", "0.1")
    assert code == 0 and done["status"] == "succeeded" and done["saved_to"] == str(out)
    assert "100.0%" in err and "120/120 rows" in err
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "ID,TITLE" and len(lines) == 121 and done["saved_bytes"] == out.stat().st_size


def test_export_of_a_method_that_is_not_a_list_is_5(cli, sandbox_portal):
    code, answer, _err = cli("export", "crm.lead.add", "--portal", "demo", "--timeout", "0")
    assert code == 5 and answer["error"]["code"] == "invalid_request" and answer["error"]["field"] == "method"


def test_export_waiting_for_approval_is_3_after_the_timeout(cli, sandbox_portal, make_agent, live_server, capsys):
    agent = make_agent("cautious", portal=sandbox_portal, read="approve")
    code = main(["--json", "export", "crm.lead.list", "--portal", "demo", "--timeout", "0.2", "--interval", "0.1"],
                client=Client(live_server.url, agent.token))
    answer = json.loads(capsys.readouterr().out)
    assert code == 3 and answer["status"] == "pending_approval"


def test_bad_usage_is_2(cli, sandbox_portal):
    assert cli("export", "crm.lead.list", "--portal", "demo", "--filter", "[1]")[0] == 2
    assert cli("export", "crm.lead.list", "--portal", "demo", "--interval", "0")[0] == 2


def test_progress_line_shows_rows_rate_and_time_left():
    line = progress_line({"status": "running", "progress": {
        "rows_fetched": 40000, "estimated_total": 100000, "rows_per_second": 4000.0, "seconds_left": 75.0,
        "percent": 40.0}}, width=10)
    assert line == "[####......]  40.0%  40,000/100,000 rows  4,000 rows/s  1m15s left  (running)"
    assert "?/? rows" in progress_line({"status": "pending_approval", "progress": {}})
