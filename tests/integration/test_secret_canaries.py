"""Secret canaries (issue 12, point 4): a distinctive value in every credential field, the agent's
bearer token and its callback secret; a whole flow with every logger at DEBUG, failing portal
calls and an OAuth refresh included; then every log line, API answer, database row (the audit
log among them, read raw so ciphertext stays ciphertext), admin page, approver page, error page
and mail is scanned. No canary may appear anywhere, except the agent token on its one-time page."""

import json
import logging
import re
import socket
import time

import pytest
from django.contrib import admin
from django.core import mail
from django.db import connection
from django.test import Client
from django.urls import reverse

from apps.agents.models import Agent
from apps.agents.services import agent_rotate_callback_secret
from apps.audit.models import AuditEntry
from apps.plans import services as plan_services
from apps.plans.models import Plan
from apps.policy.services import grant_upsert
from apps.portals.models import Credential, OAuthApp
from apps.portals.services import portal_upsert

from .bitrix.stub import StubServer

pytestmark = pytest.mark.django_db

CANARIES = {
    "webhook_code": "CANARYwebhook7f3a9c1e",
    "dead_webhook_code": "CANARYdeadhook51bd02",
    "client_secret": "CANARYclientsecret2b8d4f",
    "credential_client_secret": "CANARYcredsecret93ac61",
    "admin_client_secret": "CANARYadminsecret0c7e55",
    "access_token": "CANARYaccess5e1f0a77",
    "refresh_token": "CANARYrefresh3c9b2d88",
    "new_access_token": "CANARYnewaccess81f2c0",
    "new_refresh_token": "CANARYnewrefresh64e0b1",
    "application_token": "CANARYapptoken9d4e2a66",
    "oauth_application_token": "CANARYoauthapptok17f3",
    "install_access_token": "CANARYinstallacc0a9c4",
    "install_application_token": "CANARYinstallapp6b2e9",
    "callback_secret": "whsec_CANARYcallback4a1b",
}
OK = {"result": {"ID": "1"}, "time": {"start": 1.0, "finish": 1.1, "duration": 0.1}}


def leaks(text: str, allowed: frozenset = frozenset()) -> list[str]:
    return [name for name, value in CANARIES.items() if name not in allowed and value in text]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: Loggers the settings keep above DEBUG because their DEBUG records carry secrets by design:
#: django.template logs the whole template context when a variable lookup fails.
PINNED = {"django.template"}


@pytest.fixture
def debug_logging(caplog):
    """Every logger at DEBUG (urllib3 included, which the settings keep at WARNING), captured;
    only the PINNED loggers keep the level the settings give them (checked here)."""
    from django.conf import settings

    for name in PINNED:
        assert logging.getLevelName(settings.LOGGING["loggers"][name]["level"]) > logging.DEBUG
        assert logging.getLogger(name).getEffectiveLevel() > logging.DEBUG
    names = [name for name in logging.root.manager.loggerDict if isinstance(logging.getLogger(name), logging.Logger)]
    caplog.set_level(logging.DEBUG)
    for name in names + ["urllib3", "urllib3.connectionpool", "requests", "django.request", "django.db.backends",
                         "celery", "apps"]:
        if name not in PINNED and not any(name.startswith(p + ".") for p in PINNED):
            caplog.set_level(logging.DEBUG, logger=name)
    return caplog


@pytest.fixture
def stub():
    server = StubServer().start()
    yield server
    server.stop()


def test_no_secret_reaches_logs_answers_rows_or_pages(debug_logging, stub, settings, django_user_model, api,
                                                      django_capture_on_commit_callbacks, celery_drain):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.ADMINS = [("Ops", "ops@example.com")]
    c = CANARIES
    answers: list[str] = []  # every body an agent or a browser got back
    token_pages: list[str] = []

    # --- the portal side: a webhook portal, an OAuth portal, and a portal nobody answers on -------
    refreshed = []

    def respond(seen):
        if seen.path == "/oauth/token/":
            refreshed.append(seen.query)
            return 200, {"access_token": c["new_access_token"], "refresh_token": c["new_refresh_token"],
                         "expires_in": 3600, "expires": int(time.time()) + 3600, "scope": "crm"}, {}
        method = seen.path.rsplit("/", 1)[-1]
        auth = (seen.json or {}).get("auth")
        if auth == c["access_token"]:
            return 401, {"error": "expired_token", "error_description": "The access token provided has expired."}, {}
        if method == "crm.lead.add":
            return 500, {"error": "INTERNAL_SERVER_ERROR", "error_description": "Internal error"}, {}
        if method == "crm.lead.update":
            return 400, {"error": "ERROR_CORE", "error_description": "The field TITLE is wrong"}, {}
        if method == "crm.deal.list":
            return 503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}, {}
        return 200, OK, {}

    stub.respond = respond
    superuser = django_user_model.objects.create_superuser("root", "root@example.com", "pw-root-123")
    staff = Client()
    staff.force_login(superuser)

    hook, _ = portal_upsert(slug="canary-hook", base_url=f"{stub.url}/p", auth_mode="webhook",
                            secrets={"webhook_code": c["webhook_code"], "application_token": c["application_token"]},
                            fields={"webhook_user_id": "1"}, approvers=[superuser])
    dead, _ = portal_upsert(slug="canary-dead", base_url=f"http://127.0.0.1:{closed_port()}/p", auth_mode="webhook",
                            secrets={"webhook_code": c["dead_webhook_code"]}, fields={"webhook_user_id": "1"})
    app = OAuthApp.objects.create(name="canary app", client_id="local.canary.1", client_secret=c["client_secret"],
                                  token_url=f"{stub.url}/oauth/token/")
    oauth, _ = portal_upsert(slug="canary-oauth", base_url=f"{stub.url}/p", auth_mode="oauth", member_id="m-canary",
                             secrets={"access_token": c["access_token"], "refresh_token": c["refresh_token"],
                                      "application_token": c["oauth_application_token"]},
                             fields={"oauth_app": app})
    # a credential of its own with a client secret of its own (the OAuth app's is used for refresh)
    cred = Credential.objects.get(portal=oauth)
    cred.client_secret = c["credential_client_secret"]
    cred.client_id = "local.canary.1"
    cred.save()

    # --- the admin: an OAuth app's secret typed in a form; an agent created and rotated -----------
    response = staff.post(reverse("admin:portals_oauthapp_add"), {
        "name": "typed app", "client_id": "local.typed.1", "client_secret": c["admin_client_secret"],
        "scopes": "crm", "token_url": "https://oauth.bitrix24.tech/oauth/token/"}, follow=True)
    assert response.status_code == 200 and OAuthApp.objects.get(client_id="local.typed.1").client_secret == \
        c["admin_client_secret"]
    answers.append(response.content.decode())

    response = staff.post(reverse("admin:agents_agent_add"), {"slug": "canary-agent", "name": "Canary"})
    page = response.content.decode()
    token = re.search(r'<pre id="agent-token"[^>]*>([^<]+)</pre>', page).group(1).strip()
    CANARIES["agent_token_first"] = token
    token_pages.append(page)
    agent = Agent.objects.get(slug="canary-agent")
    response = staff.post(reverse("admin:agents_agent_changelist"),
                          {"action": "rotate_token", "_selected_action": [agent.pk]})
    page = response.content.decode()
    token = re.search(r'<pre id="agent-token"[^>]*>([^<]+)</pre>', page).group(1).strip()
    assert token != CANARIES["agent_token_first"]
    CANARIES["agent_token"] = token
    token_pages.append(page)
    assert CANARIES["agent_token"] in token_pages[1] and CANARIES["agent_token_first"] in token_pages[0]

    issued = agent_rotate_callback_secret(agent=agent, acting_user=superuser)
    CANARIES["issued_callback_secret"] = issued
    agent.callback_secret = c["callback_secret"]  # the canary, encrypted at rest like any callback secret
    agent.save(update_fields=["callback_secret"])
    for portal in (hook, dead, oauth):
        grant_upsert(agent=agent, portal=portal, pack="core", read="auto", write="auto", destructive="approve",
                     acting_user=superuser)
    token = CANARIES["agent_token"]

    # --- the agent's flow: successes, failures, a refresh, an unknown outcome ---------------------
    def submit(body, **headers):
        with django_capture_on_commit_callbacks(execute=True):
            r = api.post("/api/v1/plans", body, token=token, headers=headers)
        answers.append(r.content.decode())
        return r

    bodies = [
        {"portal": "canary-hook", "method": "crm.lead.get", "params": {"id": 1}},  # succeeds
        {"portal": "canary-hook", "method": "crm.lead.add", "params": {"fields": {"TITLE": "x"}}},  # 500: unknown
        {"portal": "canary-hook", "method": "crm.lead.update", "params": {"id": 1, "fields": {"TITLE": ""}}},  # 400
        {"portal": "canary-dead", "method": "crm.lead.get", "params": {"id": 1}},  # connection refused
        {"portal": "canary-dead", "method": "crm.lead.add", "params": {"fields": {"TITLE": "y"}}},
        {"portal": "canary-oauth", "method": "crm.lead.get", "params": {"id": 1}},  # expired token -> refresh
        {"portal": "canary-hook", "method": "crm.deal.list", "params": {}},  # refused by the limit: retried
        {"portal": "canary-hook", "method": "crm.lead.delete", "params": {"id": 1}},  # waits for approval
    ]
    ids = []
    for body in bodies:  # one at a time, so each runs alone (not auto-batched) and meets its own answer
        r = submit(body)
        assert r.status_code in (200, 201, 202), r.content
        ids.append(r.json()["id"])
        with django_capture_on_commit_callbacks(execute=True):
            celery_drain()
    submit({"portal": "canary-hook", "method": "crm.lead.get", "params": {"id": 2}}, **{"Idempotency-Key": "k1"})
    submit({"portal": "canary-hook", "method": "crm.lead.get", "params": {"id": 3}}, **{"Idempotency-Key": "k1"})
    submit({"portal": "canary-hook", "method": "batch", "params": {"cmd": {"a": "batch?x=1"}}})
    submit({"portal": "nope", "method": "crm.lead.get", "params": {}})
    submit({"portal": "canary-hook", "method": "im.notify", "params": {}})
    for _ in range(6):  # run what the broker holds, retries included (their countdowns are ignored here)
        with django_capture_on_commit_callbacks(execute=True):
            ran = celery_drain()
        if not ran:
            break
    assert refreshed, "the OAuth portal's expired token was refreshed"
    assert Credential.objects.get(portal=oauth).access_token == c["new_access_token"]
    statuses = {str(p.pk): p.status for p in Plan.objects.all()}
    assert statuses[ids[0]] == "succeeded"
    assert statuses[ids[1]] == "needs_reconciliation"
    assert statuses[ids[2]] == "failed"
    assert statuses[ids[5]] == "succeeded"
    assert statuses[ids[7]] == "pending_approval"

    for path in [f"/api/v1/plans/{i}" for i in ids] + [
            "/api/v1/plans", "/api/v1/capabilities", "/api/v1/methods/crm.lead.add?portal=canary-hook",
            "/api/v1/openapi.json", "/api/v1/plans/not-a-plan", "/api/v1/nowhere"]:
        answers.append(api.get(path, token=token).content.decode())
    answers.append(api.get("/api/v1/plans", token=c["webhook_code"]).content.decode())  # a secret as a token
    with django_capture_on_commit_callbacks(execute=True):
        answers.append(api.post(f"/api/v1/plans/{ids[7]}/cancel", token=token).content.decode())

    # the install callback carries tokens in its form: a refusal must not echo them
    anon = Client(raise_request_exception=False)
    for form in ({"auth[access_token]": c["install_access_token"], "auth[refresh_token]": c["refresh_token"],
                  "auth[application_token]": c["install_application_token"], "auth[domain]": "not a domain",
                  "auth[member_id]": "m-x"},
                 {"auth[access_token]": c["install_access_token"] + "!", "auth[domain]": "x.bitrix24.com"}):
        answers.append(anon.post("/bitrix24/install/", form).content.decode())
    answers.append(anon.get("/bitrix24/oauth/callback/", {"code": c["install_access_token"], "state": "bad"})
                   .content.decode())
    # a human settles the unknown outcome
    with django_capture_on_commit_callbacks(execute=True):
        plan_services.plan_reconcile(plan_id=ids[1], user=superuser, succeeded=False, comment="checked")

    # --- pages: every registered model's changelist, add and change pages; approver pages; errors
    for model, model_admin in admin.site._registry.items():
        info = model._meta.app_label, model._meta.model_name
        pages = [reverse("admin:{}_{}_changelist".format(*info))]
        if model_admin.has_add_permission(_request(superuser)) and model is not Agent:
            pages.append(reverse("admin:{}_{}_add".format(*info)))
        for obj in model_admin.get_queryset(_request(superuser))[:5]:
            pages.append(reverse("admin:{}_{}_change".format(*info), args=[obj.pk]))
            pages.append(reverse("admin:{}_{}_history".format(*info), args=[obj.pk]))
        for path in pages:
            r = staff.get(path, follow=True)  # a plan's history redirects to its approval page
            assert r.status_code == 200, (path, r.status_code)
            answers.append(r.content.decode())
    for path in ["/approvals/", "/approvals/state"] + [f"/approvals/plans/{i}/" for i in ids] + [
            "/admin/", "/approvals/plans/nope/", "/admin/plans/plan/nope/change/", "/nowhere"]:
        answers.append(staff.get(path, follow=True).content.decode())
    broken = Client(raise_request_exception=False)
    answers.append(broken.get("/api/v1/plans", HTTP_HOST="bad host!").content.decode())
    answers.append(broken.post("/api/v1/plans", "{not json", content_type="application/json",
                               HTTP_AUTHORIZATION=f"Bearer {token}").content.decode())

    # --- the scan --------------------------------------------------------------------------------
    assert len(debug_logging.records) > 50
    assert any(r.name.startswith("urllib3") and r.levelno == logging.DEBUG for r in debug_logging.records)
    log_text = debug_logging.text + "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in debug_logging.records)
    leaked = [(r.name, r.levelname, leaks(f"{r.getMessage()} {r.exc_text or ''}"), r.getMessage()[:300])
              for r in debug_logging.records if leaks(f"{r.getMessage()} {r.exc_text or ''}")]
    assert leaks(log_text) == [], f"a secret reached the logs: {leaked}"
    for body in answers:
        assert leaks(body) == [], f"a secret reached an answer or a page: {body[:300]}"
    for page in token_pages:  # the one-time pages show their own token and nothing else secret
        assert leaks(page, allowed=frozenset({"agent_token", "agent_token_first"})) == []
    assert AuditEntry.objects.count() > 20
    audit_text = json.dumps(list(AuditEntry.objects.values()), default=str)
    assert leaks(audit_text) == [], "a secret reached the audit log"
    assert leaks(_every_row_raw()) == [], "a secret is stored in clear"
    assert leaks("\n".join(f"{m.subject}\n{m.body}\n{m.alternatives}" for m in mail.outbox)) == []


def _request(user):
    from django.test import RequestFactory

    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def _every_row_raw() -> str:
    """Every row of every table as the database holds it (encrypted fields stay ciphertext)."""
    out = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - table names from introspection
            out.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(out)
