"""An approver of the portal stops an approved export from the admin (`export_stop`): a running one
ends `cancelled` between its batches, recorded as the approver's, with its partial file removed;
one waiting for approval is decided on its plan instead; a final one, or someone who may not
decide on that portal, is refused and nothing changes."""

import pytest

from apps.audit.models import AuditEntry
from apps.core.exceptions import Conflict, NotAllowed
from apps.exports import files, paging
from apps.exports.services import export_run, export_stop, export_submit, exports_dispatch
from apps.plans.models import Plan

from .seed import seed_leads

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def started(export_portal, make_agent, celery_drain, monkeypatch):
    """An export that has fetched one batch (two pages) and waits for its next slice."""
    monkeypatch.setattr(paging, "MAX_PAGES", 2)
    seed_leads(export_portal.sandbox, 450)
    agent = make_agent("exp-agent", portal=export_portal)
    export = export_submit(agent=agent, portal=export_portal, method="crm.lead.list", select=["ID", "TITLE"],
                           filter_={}, order={}, fmt="jsonl").export
    celery_drain(limit=1)  # its plan runs
    assert export_run(export_id=export.pk, budget=0).status == "running"
    assert files.export_path(export).stat().st_size > 0
    return export


def test_an_approver_stops_a_running_export_and_it_is_recorded_as_theirs(started, export_portal, make_approver):
    approver = make_approver("alice", portals=[export_portal])
    stopped = export_stop(export_id=started.pk, user=approver)
    assert stopped.status == "cancelled" and stopped.rows_written == 100
    assert not files.export_path(started).exists()
    assert export_run(export_id=started.pk).status == "skipped"
    assert exports_dispatch() == 0
    [moved] = [e for e in AuditEntry.objects.filter(action="export.transition")
               if e.data.get("export") == str(started.pk) and e.data["to"] == "cancelled"]
    assert (moved.actor_type, moved.actor, moved.data["stopped_by"]) == ("user", "alice", "approver")


def test_someone_not_deciding_on_the_portal_may_not_stop_it(started, make_approver, django_user_model):
    elsewhere = make_approver("bob")  # the permission, but on no portal's approver list
    root = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    for user in (elsewhere, root):
        with pytest.raises(NotAllowed):
            export_stop(export_id=started.pk, user=user)
    started.refresh_from_db()
    assert started.status == "running" and files.export_path(started).exists()


def test_a_waiting_export_is_decided_on_its_plan_and_a_final_one_cannot_be_stopped(export_portal, make_agent,
                                                                                    make_approver, run_exports):
    seed_leads(export_portal.sandbox, 60)
    approver = make_approver("alice", portals=[export_portal])
    waiting = export_submit(agent=make_agent("asks", portal=export_portal, read="approve"), portal=export_portal,
                            method="crm.lead.list", select=["ID"], filter_={}, order={}, fmt="jsonl").export
    with pytest.raises(Conflict, match="reject its plan"):
        export_stop(export_id=waiting.pk, user=approver)
    assert Plan.objects.get(pk=waiting.plan_id).status == "pending_approval"

    done = export_submit(agent=make_agent("reads", portal=export_portal), portal=export_portal,
                         method="crm.lead.list", select=["ID"], filter_={}, order={}, fmt="jsonl").export
    run_exports()
    done.refresh_from_db()
    assert done.status == "succeeded"
    with pytest.raises(Conflict) as refused:
        export_stop(export_id=done.pk, user=approver)
    assert refused.value.extra["status"] == "succeeded"
    assert files.export_path(done).exists()


def test_the_admin_action_needs_a_second_factor_where_deciding_does(started, export_portal, make_approver, client,
                                                                    settings):
    from django.contrib.auth.models import Permission

    settings.APPROVER_MFA_REQUIRED = True
    approver = make_approver("alice", portals=[export_portal])
    approver.user_permissions.add(Permission.objects.get(content_type__app_label="exports", codename="view_export"))
    client.force_login(approver)
    response = client.post("/admin/exports/export/", {"action": "stop_selected", "_selected_action": [started.pk]})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/2fa/totp/activate/")
    started.refresh_from_db()
    assert started.status == "running" and files.export_path(started).exists()

    settings.APPROVER_MFA_REQUIRED = False
    response = client.post("/admin/exports/export/", {"action": "stop_selected", "_selected_action": [started.pk]})
    assert response.status_code == 302
    started.refresh_from_db()
    assert started.status == "cancelled"
