"""Submit → approve in the admin → execute against the sandbox portal over real HTTP → poll."""

import pytest
import requests

from apps.audit.services import audit_verify
from apps.plans.models import Plan

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sandbox_portal(make_sandbox_portal):
    return make_sandbox_portal("e2e")


def test_submit_approve_execute(live_server, sandbox_portal, make_agent, make_approver, client, celery_drain):
    agent = make_agent("e2e-agent", portal=sandbox_portal)
    approver = make_approver("approver", portals=[sandbox_portal])
    auth = {"Authorization": f"Bearer {agent.token}"}
    api = f"{live_server.url}/api/v1"

    # 1. a write is held for approval
    answer = requests.post(f"{api}/plans", json={
        "portal": "e2e", "method": "crm.lead.add", "params": {"fields": {"TITLE": "From the agent"}},
        "reason": "demo"}, headers=auth, timeout=10)
    assert answer.status_code == 201, answer.text
    plan = answer.json()
    assert plan["status"] == "pending_approval" and plan["risk"] == "write"
    # nothing runs before approval: only the approvers are told
    assert celery_drain() == [("apps.approvals.tasks.notify_portal_pending", [sandbox_portal.pk], {})]
    assert Plan.objects.get(pk=plan["id"]).approvers_told_at is not None

    # 2. the approver approves in the admin (confirmation page, then the POST that confirms)
    client.force_login(approver)
    changelist = "/admin/plans/plan/"
    page = client.post(changelist, {"action": "approve_selected", "_selected_action": [plan["id"]]})
    assert page.status_code == 200 and b"crm.lead.add" in page.content and b"From the agent" in page.content
    done = client.post(changelist, {"action": "approve_selected", "_selected_action": [plan["id"]], "post": "yes",
                                    "comment": "looks right", f"hash-{plan['id']}": plan["content_hash"]})
    assert done.status_code == 302
    assert Plan.objects.get(pk=plan["id"]).status == "approved"

    # 3. the worker executes it (ids only in the message) against the sandbox over HTTP
    ran = celery_drain()
    assert ran == [("apps.plans.tasks.execute_plan", [plan["id"]], {})]

    # 4. the agent polls it to succeeded and gets the portal's answer
    final = requests.get(f"{api}/plans/{plan['id']}", headers=auth, timeout=10).json()
    assert final["status"] == "succeeded", final
    lead_id = final["result"]["steps"]["call"]["result"]
    assert int(lead_id) > 0
    base = f"{live_server.url}/sandbox/e2e/rest/1/{sandbox_portal.webhook_code_for_test}"
    lead = requests.post(f"{base}/crm.lead.get", json={"id": lead_id}, timeout=10).json()
    assert lead["result"]["TITLE"] == "From the agent"

    # 5. a read runs at once, and the chain of audit entries is intact
    read = requests.post(f"{api}/plans", json={"portal": "e2e", "method": "crm.lead.list", "params": {}},
                         headers=auth, timeout=10).json()
    assert read["status"] == "approved"
    celery_drain()
    read = requests.get(f"{api}/plans/{read['id']}", headers=auth, timeout=10).json()
    assert read["status"] == "succeeded"
    assert [row["TITLE"] for row in read["result"]["steps"]["call"]["result"]] == ["From the agent"]
    assert audit_verify().ok


def test_chain_runs_as_one_batch_with_references(live_server, sandbox_portal, make_agent, celery_drain):
    agent = make_agent("chain-agent", portal=sandbox_portal, write="auto")
    auth = {"Authorization": f"Bearer {agent.token}"}
    steps = [
        {"name": "lead", "method": "crm.lead.add", "params": {"fields": {"TITLE": "Chained"}}},
        {"name": "task", "method": "tasks.task.add",
         "params": {"fields": {"TITLE": "Call lead $result[lead]", "RESPONSIBLE_ID": 1}}},
        {"name": "check", "method": "crm.lead.get", "params": {"id": "$result[lead]"}},
    ]
    plan = requests.post(f"{live_server.url}/api/v1/plans", json={"portal": "e2e", "steps": steps},
                         headers=auth, timeout=10).json()
    assert plan["status"] == "approved", plan
    celery_drain()
    final = Plan.objects.get(pk=plan["id"])
    assert final.status == "succeeded", final.error
    out = final.result["steps"]
    assert out["check"]["result"]["TITLE"] == "Chained"
    assert out["check"]["result"]["ID"] == str(out["lead"]["result"])


def test_changed_content_is_failed_not_sent(live_server, sandbox_portal, make_agent, make_approver, celery_drain):
    from apps.plans import services

    agent = make_agent("tamper-agent", portal=sandbox_portal)
    approver = make_approver("approver", portals=[sandbox_portal])
    steps = [{"name": "call", "method": "crm.lead.add", "params": {"fields": {"TITLE": "a"}}}]
    plan = services.plan_submit(agent=agent, portal=sandbox_portal, steps=steps).plan
    services.plan_decide(plan_id=plan.pk, user=approver, decision="approve")
    Plan.objects.filter(pk=plan.pk).update(
        steps=[{"name": "call", "method": "crm.lead.add", "params": {"fields": {"TITLE": "evil"}}}])
    celery_drain()
    final = Plan.objects.get(pk=plan.pk)
    assert final.status == "failed"
    assert final.error["code"] == "content_hash_mismatch"
    assert final.attempts.count() == 0  # nothing was sent
