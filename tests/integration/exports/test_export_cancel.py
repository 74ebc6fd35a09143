"""POST /api/v1/exports/<id>/cancel: a waiting export cancels its plan too (through the plans'
service), a queued or running one stops before its next batch and keeps no partial file, a final
one answers 409 with its status; another agent's export is 404. Also `b24cp export-cancel`."""

import json

import pytest

from apps.audit.models import AuditEntry
from apps.bitrix.client import BitrixClient
from apps.exports import files, paging
from apps.exports.models import Export
from apps.exports.services import export_cancel, export_run, export_submit, exports_dispatch
from apps.plans.models import Plan
from apps.sandbox.selectors import sandbox_method_calls
from clients.b24cp import Client
from clients.b24cp.cli import main
from tests.integration.clients.conftest import plane_agent, sandbox_portal  # noqa: F401 (fixtures)

from .seed import seed_leads

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def small_batches(monkeypatch):
    """Two pages (100 rows) per batch, so a few hundred leads take several batches."""
    monkeypatch.setattr(paging, "MAX_PAGES", 2)


def _submit(api, agent, **body):
    return api.post("/api/v1/exports", {"portal": "exp", "method": "crm.lead.list", **body}, token=agent.token)


def _cancel(api, agent, export_id):
    return api.post(f"/api/v1/exports/{export_id}/cancel", {}, token=agent.token)


def _started(agent, portal, celery_drain):
    export = export_submit(agent=agent, portal=portal, method="crm.lead.list", select=["ID", "TITLE"],
                           filter_={}, order={}, fmt="jsonl").export
    ran = celery_drain(limit=1)  # the plan runs (its first page); the export's run stays queued
    assert ran[0][0] == "apps.plans.tasks.execute_plan"
    return export


def _transitions(export_id):
    return [e for e in AuditEntry.objects.filter(action="export.transition").order_by("seq")
            if e.data.get("export") == str(export_id)]


def test_cancelling_an_export_waiting_for_approval_cancels_its_plan(api, export_portal, make_agent, run_exports):
    seed_leads(export_portal.sandbox, 60)
    agent = make_agent("exp-agent", portal=export_portal, read="approve")
    export = _submit(api, agent, select=["ID"]).json()
    assert export["status"] == "pending_approval"

    response = _cancel(api, agent, export["id"])
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "cancelled" and body["plan_status"] == "cancelled" and body["finished_at"]
    assert Plan.objects.get(pk=export["plan_id"]).status == "cancelled"
    # the plans' own transition and the export's, both by the agent
    [plan_audit] = [e for e in AuditEntry.objects.filter(action="plan.transition", plan_id=export["plan_id"])
                    if e.data["to"] == "cancelled"]
    assert plan_audit.data["from"] == "pending_approval" and plan_audit.actor_type == "agent"
    [moved] = _transitions(export["id"])
    assert (moved.data["from"], moved.data["to"], moved.actor_type) == ("pending_approval", "cancelled", "agent")

    assert exports_dispatch() == 0
    run_exports()
    assert sandbox_method_calls(portal=export_portal.sandbox, method="crm.lead.list") == 0

    twice = _cancel(api, agent, export["id"])
    assert twice.status_code == 409
    assert twice.json()["error"]["code"] == "conflict" and twice.json()["error"]["status"] == "cancelled"
    assert len(_transitions(export["id"])) == 1


def test_cancelling_a_queued_export_before_its_plan_ran_cancels_both(api, export_portal, make_agent, run_exports):
    seed_leads(export_portal.sandbox, 60)
    agent = make_agent("exp-agent", portal=export_portal)
    export = _submit(api, agent, select=["ID"]).json()
    assert export["status"] == "queued" and Plan.objects.get(pk=export["plan_id"]).status == "approved"
    body = _cancel(api, agent, export["id"]).json()
    assert body["status"] == "cancelled" and body["plan_status"] == "cancelled"
    run_exports()  # the plan's execution and the export's run find nothing to do
    assert sandbox_method_calls(portal=export_portal.sandbox, method="crm.lead.list") == 0
    assert Export.objects.get(pk=export["id"]).status == "cancelled"


def test_cancelling_a_queued_export_whose_plan_ran_leaves_the_plan(api, export_portal, make_agent, celery_drain):
    seed_leads(export_portal.sandbox, 60)
    agent = make_agent("exp-agent", portal=export_portal)
    export = _started(agent, export_portal, celery_drain)
    assert Plan.objects.get(pk=export.plan_id).status == "succeeded"
    body = _cancel(api, agent, export.pk).json()
    assert body["status"] == "cancelled" and body["plan_status"] == "succeeded"
    assert export_run(export_id=export.pk).status == "skipped"
    assert not files.export_path(export).exists()


def test_cancelling_between_slices_removes_the_partial_file(api, export_portal, make_agent, celery_drain,
                                                            small_batches):
    seed_leads(export_portal.sandbox, 450)
    agent = make_agent("exp-agent", portal=export_portal)
    export = _started(agent, export_portal, celery_drain)
    assert export_run(export_id=export.pk, budget=0).status == "running"  # one batch, lease released
    assert files.export_path(export).stat().st_size > 0
    calls = sandbox_method_calls(portal=export_portal.sandbox, method="batch")

    body = _cancel(api, agent, export.pk).json()
    assert body["status"] == "cancelled" and body["progress"]["rows_fetched"] == 100
    assert body["file"]["ready"] is False and body["file"]["url"] is None
    assert not files.export_path(export).exists()
    assert export_run(export_id=export.pk).status == "skipped"
    assert exports_dispatch() == 0
    assert sandbox_method_calls(portal=export_portal.sandbox, method="batch") == calls
    assert api.get(f"/api/v1/exports/{export.pk}/file", token=agent.token).status_code == 409


def test_cancelling_while_the_fetch_loop_runs_stops_it_at_its_next_save(export_portal, make_agent, celery_drain,
                                                                       small_batches, monkeypatch):
    """The agent cancels while the run's second batch is on its way to the portal: the run's next
    conditional progress update changes no row, so it stops there, sends nothing more and removes
    the file it had written."""
    seed_leads(export_portal.sandbox, 450)
    agent = make_agent("exp-agent", portal=export_portal)
    export = _started(agent, export_portal, celery_drain)
    real_batch = BitrixClient.batch
    sent = []

    def batch_then_cancel(self, commands, **kwargs):
        answer = real_batch(self, commands, **kwargs)
        sent.append(len(commands))
        if len(sent) == 2:
            export_cancel(export_id=export.pk, agent=agent)
            assert not files.export_path(export).exists()
        return answer

    monkeypatch.setattr(BitrixClient, "batch", batch_then_cancel)
    outcome = export_run(export_id=export.pk, budget=3600)
    assert outcome.status == "cancelled" and outcome.again_in is None
    assert sent == [2, 2]  # nothing after the cancel
    export.refresh_from_db()
    assert export.status == "cancelled" and export.lease == "" and export.finished_at
    assert export.rows_written == 100  # the first batch's progress; the second was never saved
    assert not files.export_path(export).exists()
    [started, cancelled] = _transitions(export.pk)
    assert started.data["to"] == "running"
    assert (cancelled.data["from"], cancelled.data["to"], cancelled.actor_type) == ("running", "cancelled", "agent")


def test_cancelled_while_a_batch_is_written_the_run_removes_what_it_wrote(export_portal, make_agent, celery_drain,
                                                                          small_batches, monkeypatch):
    """The cancel lands after the run's lease check and before its write: the write recreates the
    file the cancel removed, the progress update then changes no row, and the run removes it."""
    seed_leads(export_portal.sandbox, 450)
    agent = make_agent("exp-agent", portal=export_portal)
    export = _started(agent, export_portal, celery_drain)
    real_append = files.append
    writes = []

    def cancel_then_append(path, *, at, data):
        writes.append(at)
        if len(writes) == 2:
            export_cancel(export_id=export.pk, agent=agent)
            assert not path.exists()
        return real_append(path, at=at, data=data)

    monkeypatch.setattr(files, "append", cancel_then_append)
    outcome = export_run(export_id=export.pk, budget=3600)
    assert outcome.status == "cancelled" and len(writes) == 2
    export.refresh_from_db()
    assert export.status == "cancelled" and export.rows_written == 100
    assert not files.export_path(export).exists()


def test_cancelled_just_before_the_slice_hands_over_no_run_is_queued(export_portal, make_agent, celery_drain,
                                                                    small_batches, monkeypatch):
    """The cancel lands after the slice's last save and before it hands the lease back: the
    hand-over (conditional on `running`) changes no row, so no follow-up run is asked for."""
    from apps.exports import services

    seed_leads(export_portal.sandbox, 450)
    agent = make_agent("exp-agent", portal=export_portal)
    export = _started(agent, export_portal, celery_drain)
    real_save = services._save

    def save_then_cancel(*args, **kwargs):
        saved = real_save(*args, **kwargs)
        export_cancel(export_id=export.pk, agent=agent)
        return saved

    monkeypatch.setattr(services, "_save", save_then_cancel)
    outcome = export_run(export_id=export.pk, budget=0)
    assert outcome.status == "cancelled" and outcome.again_in is None
    export.refresh_from_db()
    assert export.status == "cancelled" and export.rows_written == 100
    assert not files.export_path(export).exists()


def test_a_final_export_answers_409_with_its_status(api, export_portal, make_agent, celery_drain):
    seed_leads(export_portal.sandbox, 20)
    agent = make_agent("exp-agent", portal=export_portal)
    export = _started(agent, export_portal, celery_drain)
    assert export_run(export_id=export.pk).status == "succeeded"
    response = _cancel(api, agent, export.pk)
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "conflict" and error["status"] == "succeeded" and "succeeded" in error["message"]
    assert files.export_path(export).exists()
    assert Export.objects.get(pk=export.pk).status == "succeeded"


def test_another_agents_export_cannot_be_cancelled(api, export_portal, make_agent):
    owner = make_agent("exp-agent", portal=export_portal, read="approve")
    other = make_agent("other-agent", portal=export_portal, read="approve")
    export = _submit(api, owner).json()
    before = AuditEntry.objects.count()
    response = _cancel(api, other, export["id"])
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert Export.objects.get(pk=export["id"]).status == "pending_approval"
    assert Plan.objects.get(pk=export["plan_id"]).status == "pending_approval"
    assert AuditEntry.objects.count() == before


def test_cli_export_cancel(live_server, plane_agent, sandbox_portal, capsys):  # noqa: F811 (fixtures)
    client = Client(live_server.url, plane_agent.token)
    export = client.export("demo", "crm.lead.list", select=["ID"])
    assert export["status"] == "queued"

    assert main(["--json", "export-cancel", export["id"]], client=client) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["id"] == export["id"] and answer["status"] == "cancelled"

    assert main(["export-cancel", export["id"]], client=client) == 5
    captured = capsys.readouterr()
    assert "error conflict" in captured.err and "cancelled" in captured.err
