import datetime

import pytest
from django.utils import timezone

from apps.plans.models import IdempotencyRecord, Plan
from apps.policy.models import CustomPack
from apps.policy.services import grant_upsert

pytestmark = pytest.mark.django_db
PLANS = "/api/v1/plans"


def test_custom_pack_grants_a_method_outside_the_catalog(api, agent, portal):
    body = {"portal": "acme", "method": "vendor.widget.sync", "params": {}}
    refused = api.post(PLANS, body, token=agent.token)
    assert refused.status_code == 403 and refused.json()["error"]["pack"] is None
    CustomPack.objects.create(name="vendor", patterns="vendor.widget.*")
    grant_upsert(agent=agent, portal=portal, pack="vendor")
    accepted = api.post(PLANS, body, token=agent.token)
    assert accepted.status_code == 201
    plan = accepted.json()
    assert plan["risk"] == "write" and plan["status"] == "pending_approval"  # unknown methods fail closed
    assert "vendor" in plan["packs"]


def test_custom_pack_form_refuses_bad_patterns(admin_client):
    for patterns in ["*", "*.get", "bad method", ""]:
        response = admin_client.post("/admin/policy/custompack/add/", {"name": "x", "patterns": patterns})
        assert response.status_code == 200 and b"errornote" in response.content
    assert not CustomPack.objects.exists()
    response = admin_client.post("/admin/policy/custompack/add/", {"name": "core", "patterns": "x.y"})
    assert b"built-in" in response.content


def test_grant_form_refuses_unknown_pack(admin_client, agent, portal):
    response = admin_client.post("/admin/policy/packgrant/add/", {
        "agent": agent.pk, "portal": portal.pk, "pack": "nonsense", "read_policy": "auto",
        "write_policy": "approve", "destructive_policy": "approve2"})
    assert response.status_code == 200 and b"Unknown pack" in response.content


def test_key_is_reusable_after_24_hours(api, agent, settings):
    body = {"portal": "acme", "method": "crm.lead.add", "params": {"fields": {"TITLE": "a"}}}
    first = api.post(PLANS, body, token=agent.token, headers={"Idempotency-Key": "daily"}).json()
    IdempotencyRecord.objects.update(
        created_at=timezone.now() - datetime.timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL + 1))
    other = {**body, "params": {"fields": {"TITLE": "b"}}}
    second = api.post(PLANS, other, token=agent.token, headers={"Idempotency-Key": "daily"})
    assert second.status_code == 201 and second.json()["id"] != first["id"]
    assert Plan.objects.count() == 2


def test_secret_fields_are_write_only_in_the_admin(admin_client, portal):
    page = admin_client.get(f"/admin/portals/portal/{portal.pk}/change/").content.decode()
    assert "hook-secret-0123456789" not in page and "app-token-secret" not in page
    assert "webhook_code" in page  # the field is there, empty
