"""Resumable exports: the progress saved after every batch is where a new run goes on from,
without duplicate or missing rows, whatever a dead worker left in the file."""

import datetime
import json

import pytest
from django.utils import timezone

from apps.exports import files, paging
from apps.exports.models import Export
from apps.exports.services import export_run, export_submit, exports_dispatch, exports_purge_expired
from apps.policy.models import PackGrant
from apps.policy.services import grant_upsert
from apps.sandbox.services import sandbox_clear_faults, sandbox_set_faults

from .seed import seed_leads

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def small_batches(monkeypatch):
    """Two pages (100 rows) per batch, so a few hundred leads take several batches."""
    monkeypatch.setattr(paging, "MAX_PAGES", 2)


def _started(agent, portal, celery_drain, **kw):
    export = export_submit(agent=agent, portal=portal, method="crm.lead.list", select=["ID", "TITLE"],
                           filter_={}, order={}, fmt=kw.pop("fmt", "jsonl"), **kw).export
    ran = celery_drain(limit=1)  # the plan runs (its first page, with the total); its export run stays queued
    assert ran[0][0] == "apps.plans.tasks.execute_plan"
    return export


def _ids_in_file(export):
    export.refresh_from_db()
    lines = files.export_path(export).read_bytes().decode("utf-8").splitlines()
    return [int(json.loads(line)["ID"]) for line in lines]


def test_a_dead_workers_export_is_taken_over_from_the_last_id(export_portal, make_agent, celery_drain,
                                                              small_batches):
    ids = seed_leads(export_portal.sandbox, 450, start=7, step=2)
    agent = make_agent("exp-agent", portal=export_portal)
    export = _started(agent, export_portal, celery_drain)

    first = export_run(export_id=export.pk, budget=0)  # one batch, then hand over
    assert first.status == "running" and first.again_in == 0.0
    export.refresh_from_db()
    assert export.rows_written == 100 and export.last_id == ids[99] and export.lease == ""
    saved_bytes = export.file_bytes

    # a worker claims it, writes part of a batch and dies before saving the progress
    Export.objects.filter(pk=export.pk).update(lease="dead-worker", heartbeat_at=timezone.now())
    with open(files.export_path(export), "ab") as handle:
        handle.write(b'{"ID":"' + str(ids[100]).encode() + b'","TITLE":"Lead')
    assert export_run(export_id=export.pk).status == "skipped"  # its lease is still fresh

    # the dispatcher sees it once the heartbeat is stale, and the next run goes on from the last ID
    Export.objects.filter(pk=export.pk).update(heartbeat_at=timezone.now() - datetime.timedelta(hours=1))
    assert exports_dispatch() == 1
    done = export_run(export_id=export.pk)
    assert done.status == "succeeded"
    export.refresh_from_db()
    assert export.file_bytes > saved_bytes
    assert _ids_in_file(export) == ids
    assert export.rows_written == 450 and export.lease == ""


def test_a_lost_batch_answer_is_asked_again_from_the_saved_progress(export_portal, make_agent, celery_drain,
                                                                    small_batches):
    ids = seed_leads(export_portal.sandbox, 330)
    agent = make_agent("exp-agent", portal=export_portal)
    export = _started(agent, export_portal, celery_drain)
    export_run(export_id=export.pk, budget=0)
    # the next batch runs on the portal but its answer is lost (500 after the method ran)
    sandbox_set_faults(portal=export_portal.sandbox, fail_5xx=1, when="after", methods=["batch"])
    lost = export_run(export_id=export.pk)
    assert lost.status == "running" and lost.again_in is not None and lost.again_in > 0
    export.refresh_from_db()
    assert export.rows_written == 100 and export.retries == 1
    sandbox_clear_faults(portal=export_portal.sandbox)
    assert export_run(export_id=export.pk).status == "succeeded"
    assert _ids_in_file(export) == ids


def test_csv_header_is_written_once_across_runs(export_portal, make_agent, celery_drain, small_batches):
    seed_leads(export_portal.sandbox, 250)
    agent = make_agent("exp-agent", portal=export_portal)
    export = _started(agent, export_portal, celery_drain, fmt="csv")
    while export_run(export_id=export.pk, budget=0).status == "running":
        pass
    text = files.export_path(export).read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0] == "ID,TITLE" and len(lines) == 251 and lines.count("ID,TITLE") == 1


def test_a_grant_revoked_mid_export_stops_it(export_portal, make_agent, celery_drain, small_batches):
    seed_leads(export_portal.sandbox, 300)
    agent = make_agent("exp-agent", portal=export_portal)
    export = _started(agent, export_portal, celery_drain)
    export_run(export_id=export.pk, budget=0)
    PackGrant.objects.filter(agent=agent).delete()
    assert export_run(export_id=export.pk).status == "failed"
    export.refresh_from_db()
    assert export.error["code"] == "policy_refused" and export.rows_written == 100
    assert not files.export_path(export).exists()  # a failed export keeps no partial file


def test_a_stricter_policy_mid_export_stops_it(export_portal, make_agent, celery_drain, small_batches):
    seed_leads(export_portal.sandbox, 300)
    agent = make_agent("exp-agent", portal=export_portal)
    export = _started(agent, export_portal, celery_drain)
    export_run(export_id=export.pk, budget=0)
    grant_upsert(agent=agent, portal=export_portal, pack="core", read="approve")
    assert export_run(export_id=export.pk).status == "failed"


def test_files_are_removed_after_the_retention_period(api, export_portal, make_agent, celery_drain):
    seed_leads(export_portal.sandbox, 20)
    agent = make_agent("exp-agent", portal=export_portal)
    export = _started(agent, export_portal, celery_drain)
    assert export_run(export_id=export.pk).status == "succeeded"
    export.refresh_from_db()
    assert export.expires_at > timezone.now() + datetime.timedelta(hours=23)
    assert exports_purge_expired() == 0 and files.export_path(export).exists()
    assert exports_purge_expired(now=export.expires_at + datetime.timedelta(seconds=1)) == 1
    assert not files.export_path(export).exists()
    response = api.get(f"/api/v1/exports/{export.pk}/file", token=agent.token)
    assert response.status_code == 410 and response.json()["error"]["code"] == "gone"
    body = api.get(f"/api/v1/exports/{export.pk}", token=agent.token).json()
    assert body["status"] == "succeeded" and body["file"]["ready"] is False and body["file"]["removed_at"]


def test_another_agent_sees_nothing(api, export_portal, make_agent, celery_drain):
    seed_leads(export_portal.sandbox, 5)
    owner = make_agent("exp-agent", portal=export_portal)
    other = make_agent("other-agent", portal=export_portal)
    export = _started(owner, export_portal, celery_drain)
    export_run(export_id=export.pk)
    for path in (f"/api/v1/exports/{export.pk}", f"/api/v1/exports/{export.pk}/file"):
        response = api.get(path, token=other.token)
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
        assert api.get(path, token=owner.token).status_code == 200
    assert api.get("/api/v1/exports", token=other.token).json() == {"exports": []}
    assert [e["id"] for e in api.get("/api/v1/exports", token=owner.token).json()["exports"]] == [str(export.pk)]
