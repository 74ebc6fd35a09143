"""A real Celery worker (prefork) runs an export from the sandbox portal over real HTTP; its pool
process is SIGKILLed three times while a batch is in flight (the portal is slow to answer), once
with the whole worker. The dispatcher (the beat task) hands the export to a new run once the dead
run's heartbeat is stale; the export must end `succeeded` with every lead exactly once, in ID
order, in its file."""

import json
import time

import pytest

from apps.exports import files
from apps.exports.models import Export
from apps.exports.services import export_submit, exports_dispatch
from apps.portals.services import portal_upsert
from apps.sandbox.services import (
    sandbox_clear_faults,
    sandbox_portal_ensure,
    sandbox_set_faults,
    sandbox_webhook_create,
)
from tests.integration.exports.seed import seed_leads
from tests.services import needs_broker, needs_postgres
from tests.services.test_worker_crash import Worker, kill, wait_for

pytestmark = [
    pytest.mark.services,
    needs_postgres,
    needs_broker,
    pytest.mark.django_db(transaction=True),
]
STALE = 3  # seconds without a heartbeat before another run takes an export over
LEADS = 30_000  # 12 batches of 2,500


@pytest.fixture
def worker(settings):
    from controlplane.celery import app

    settings.EXPORT_STALE_SECONDS = STALE
    app.control.purge()
    w = Worker()
    w.env["EXPORT_STALE_SECONDS"] = str(STALE)
    w.start()
    yield w
    w.stop()
    print("".join(w.output)[-3000:])
    app.control.purge()


@pytest.fixture
def sandbox_portal(live_server):
    sandbox = sandbox_portal_ensure(slug="expkill", rate=50, burst=500)
    user_id, code = sandbox_webhook_create(portal=sandbox)
    portal, _ = portal_upsert(slug="expkill", base_url=f"{live_server.url}/sandbox/expkill", auth_mode="webhook",
                              secrets={"webhook_code": code}, fields={"webhook_user_id": str(user_id)})
    portal.sandbox = sandbox
    return portal


def test_killed_workers_export_resumes_without_duplicates_or_gaps(sandbox_portal, make_agent, worker):
    ids = seed_leads(sandbox_portal.sandbox, LEADS, start=3, step=2)
    agent = make_agent("export-agent", portal=sandbox_portal)
    sandbox_set_faults(portal=sandbox_portal.sandbox, latency=0.6, methods=["batch"])
    export = export_submit(agent=agent, portal=sandbox_portal, method="crm.lead.list", select=["ID", "TITLE"],
                           filter_={}, order={}, fmt="jsonl").export
    kills = []
    for target, whole in ((2_500, False), (10_000, True), (20_000, False)):
        child = worker.child()
        wait_for(lambda t=target: Export.objects.get(pk=export.pk).rows_written >= t, 120, f"{target} rows")
        time.sleep(0.3)  # the next batch is in flight: the portal holds every batch 0.6 s
        row = Export.objects.get(pk=export.pk)
        assert row.status == "running" and row.rows_written < LEADS
        if whole:
            worker.kill_whole()
            worker.start()
        else:
            assert kill(child)
        kills.append(row.rows_written)
        # nobody runs it now; once its heartbeat is stale the dispatcher queues a new run
        time.sleep(STALE + 0.5)
        assert exports_dispatch() >= 1
    sandbox_clear_faults(portal=sandbox_portal.sandbox)

    def finished():
        exports_dispatch()  # as beat would, in case a run was lost again
        return Export.objects.get(pk=export.pk).status in ("succeeded", "failed")

    wait_for(finished, 180, "the export to finish")
    export.refresh_from_db()
    assert export.status == "succeeded", export.error
    lines = files.export_path(export).read_bytes().decode("utf-8").splitlines()
    got = [int(json.loads(line)["ID"]) for line in lines]
    assert got == ids, "rows missing or repeated"
    assert export.rows_written == LEADS and export.file_bytes == files.export_path(export).stat().st_size
    print(f"killed at {kills} rows; {export.requests} batch requests")
