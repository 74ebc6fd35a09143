"""Submit → plan runs → rows fetched in chained batches from the sandbox over HTTP → file."""

import csv
import io
import json

import pytest

from apps.exports.models import Export
from apps.sandbox.selectors import sandbox_counters, sandbox_method_calls

from .seed import seed_leads

pytestmark = pytest.mark.django_db(transaction=True)


def _submit(api, agent, **body):
    return api.post("/api/v1/exports", {"portal": "exp", "method": "crm.lead.list", **body}, token=agent.token)


def _download(api, agent, export_id):
    response = api.get(f"/api/v1/exports/{export_id}/file", token=agent.token)
    assert response.status_code == 200, response
    return b"".join(response.streaming_content).decode("utf-8")


def test_jsonl_export_of_every_lead_in_id_order(api, export_portal, make_agent, run_exports):
    ids = seed_leads(export_portal.sandbox, 2600, start=10, step=3)  # gaps between IDs
    agent = make_agent("exp-agent", portal=export_portal)
    answer = _submit(api, agent, select=["ID", "TITLE"], format="jsonl")
    assert answer.status_code == 201, answer.json()
    export = answer.json()
    assert export["status"] == "queued" and export["progress"]["rows_fetched"] == 0
    before = sandbox_counters(portal=export_portal.sandbox)
    run_exports()
    after = sandbox_counters(portal=export_portal.sandbox)
    final = api.get(f"/api/v1/exports/{export['id']}", token=agent.token).json()
    assert final["status"] == "succeeded", final
    assert final["strategy"] == "id_chain"
    assert final["progress"]["rows_fetched"] == 2600 and final["progress"]["estimated_total"] == 2600
    assert final["progress"]["percent"] == 100.0 and final["progress"]["seconds_left"] == 0.0
    rows = [json.loads(line) for line in _download(api, agent, export["id"]).splitlines()]
    assert [int(r["ID"]) for r in rows] == ids
    assert rows[5] == {"ID": str(ids[5]), "TITLE": f"Lead {ids[5]}"}
    # the plan's one call, then 2600 rows = 52 pages: one batch of 50 and one of 3 (2 + the end)
    assert final["progress"]["requests"] == 2
    assert after["requests_total"] - before["requests_total"] == 3
    assert after["query_limit_refusals"] == before["query_limit_refusals"]


def test_csv_export_descending_with_a_filter(api, export_portal, make_agent, run_exports):
    ids = seed_leads(export_portal.sandbox, 180)
    agent = make_agent("exp-agent", portal=export_portal)
    export = _submit(api, agent, select=["TITLE", "STATUS_ID"], filter={"STATUS_ID": "NEW"},
                     order={"ID": "DESC"}, format="csv").json()
    run_exports()
    final = api.get(f"/api/v1/exports/{export['id']}", token=agent.token).json()
    assert final["status"] == "succeeded", final
    table = list(csv.reader(io.StringIO(_download(api, agent, export["id"]))))
    assert table[0] == ["TITLE", "STATUS_ID"]  # ID was fetched for paging only
    expected = [f"Lead {i}" for i in reversed(ids) if i % 3]
    assert [r[0] for r in table[1:]] == expected and {r[1] for r in table[1:]} == {"NEW"}


def test_order_by_another_field_pages_by_offsets(api, export_portal, make_agent, run_exports):
    seed_leads(export_portal.sandbox, 130)
    agent = make_agent("exp-agent", portal=export_portal)
    export = _submit(api, agent, select=["ID", "OPPORTUNITY"], order={"OPPORTUNITY": "DESC"}).json()
    run_exports()
    final = api.get(f"/api/v1/exports/{export['id']}", token=agent.token).json()
    assert final["status"] == "succeeded" and final["strategy"] == "offsets", final
    rows = [json.loads(line) for line in _download(api, agent, export["id"]).splitlines()]
    assert len(rows) == 130 and len({r["ID"] for r in rows}) == 130
    values = [float(r["OPPORTUNITY"]) for r in rows]
    assert values == sorted(values, reverse=True)


def test_empty_list_gives_an_empty_file(api, export_portal, make_agent, run_exports):
    agent = make_agent("exp-agent", portal=export_portal)
    export = _submit(api, agent).json()
    run_exports()
    final = api.get(f"/api/v1/exports/{export['id']}", token=agent.token).json()
    assert final["status"] == "succeeded" and final["progress"]["rows_fetched"] == 0
    assert _download(api, agent, export["id"]) == ""


def test_export_waits_for_approval_when_the_policy_asks(api, export_portal, make_agent, make_approver, client,
                                                        run_exports):
    seed_leads(export_portal.sandbox, 60)
    agent = make_agent("exp-agent", portal=export_portal, read="approve")
    approver = make_approver("approver", portals=[export_portal])
    export = _submit(api, agent, select=["ID"]).json()
    assert export["status"] == "pending_approval"
    run_exports()
    assert sandbox_method_calls(portal=export_portal.sandbox, method="crm.lead.list") == 0
    assert Export.objects.get(pk=export["id"]).status == "pending_approval"
    from apps.plans.services import plan_decide

    plan_decide(plan_id=export["plan_id"], user=approver, decision="approve")
    run_exports()
    from apps.exports.services import exports_dispatch

    exports_dispatch()
    run_exports()
    final = api.get(f"/api/v1/exports/{export['id']}", token=agent.token).json()
    assert final["status"] == "succeeded" and final["progress"]["rows_fetched"] == 60, final


def test_rejected_plan_rejects_the_export(api, export_portal, make_agent, make_approver, run_exports):
    agent = make_agent("exp-agent", portal=export_portal, read="approve")
    approver = make_approver("approver", portals=[export_portal])
    export = _submit(api, agent).json()
    from apps.plans.services import plan_decide

    plan_decide(plan_id=export["plan_id"], user=approver, decision="reject")
    from apps.exports.services import exports_dispatch

    assert exports_dispatch() == 1
    run_exports()
    final = api.get(f"/api/v1/exports/{export['id']}", token=agent.token).json()
    assert final["status"] == "rejected" and final["file"]["ready"] is False
    assert api.get(f"/api/v1/exports/{export['id']}/file", token=agent.token).status_code == 409


def test_idempotency_key_replays_the_same_export(api, export_portal, make_agent):
    agent = make_agent("exp-agent", portal=export_portal)
    first = api.post("/api/v1/exports", {"portal": "exp", "method": "crm.lead.list", "select": ["ID"]},
                     token=agent.token, headers={"Idempotency-Key": "k-1"})
    again = api.post("/api/v1/exports", {"portal": "exp", "method": "crm.lead.list", "select": ["ID"]},
                     token=agent.token, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 201 and again.status_code == 200
    assert again["Idempotent-Replayed"] == "true" and again.json()["id"] == first.json()["id"]
    other = api.post("/api/v1/exports", {"portal": "exp", "method": "crm.lead.list", "select": ["TITLE"]},
                     token=agent.token, headers={"Idempotency-Key": "k-1"})
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_mismatch"
    # a plan submitted with a key cannot be replayed as an export, nor the other way round
    plan = api.post("/api/v1/plans", {"portal": "exp", "method": "crm.lead.list", "params": {"select": ["ID"]}},
                    token=agent.token, headers={"Idempotency-Key": "k-2"})
    assert plan.status_code == 201
    clash = api.post("/api/v1/exports", {"portal": "exp", "method": "crm.lead.list", "select": ["ID"]},
                     token=agent.token, headers={"Idempotency-Key": "k-2"})
    assert clash.status_code == 422
    assert Export.objects.count() == 1


def test_the_plan_holds_the_call_as_sent_for_approvers(api, export_portal, make_agent):
    agent = make_agent("exp-agent", portal=export_portal, read="approve")
    export = _submit(api, agent, select=["ID", "TITLE"], filter={">OPPORTUNITY": 100}, order={"ID": "DESC"},
                     reason="quarterly report").json()
    plan = api.get(f"/api/v1/plans/{export['plan_id']}", token=agent.token).json()
    assert plan["status"] == "pending_approval" and plan["risk"] == "read" and plan["reason"] == "quarterly report"
    assert plan["steps"] == [{"name": "export", "method": "crm.lead.list", "params": {
        "select": ["ID", "TITLE"], "filter": {">OPPORTUNITY": 100}, "order": {"ID": "DESC"}}}]
