"""app.info, feature.get, method.get, methods, profile, department.get: documented shapes and
errors (api-reference/common/system/*.md)."""

import pytest

pytestmark = pytest.mark.django_db


def test_app_info_in_app_context(make_app):
    app = make_app()
    result = app.call("app.info").json()["result"]
    assert set(result) == {"ID", "CODE", "VERSION", "STATUS", "INSTALLED", "PAYMENT_EXPIRED", "DAYS", "LANGUAGE_ID",
                           "LICENSE", "LICENSE_TYPE", "LICENSE_FAMILY"}
    assert result["CODE"] == app.client_id and result["INSTALLED"] is True and isinstance(result["ID"], int)


def test_app_info_through_a_webhook_is_access_denied(rest):
    answer = rest.call("app.info")
    assert answer.status_code == 400  # as the page states
    assert answer.json() == {"error": "ACCESS_DENIED",
                             "error_description": "Access denied! Application context required"}


def test_feature_get(rest):
    assert rest.call("feature.get", {"CODE": "rest_offline_extended"}).json()["result"] == {"value": "Y"}
    assert rest.call("feature.get", {"CODE": "something_else"}).json()["result"] == {"value": "N"}
    empty = rest.call("feature.get")
    assert empty.status_code == 400
    assert empty.json() == {"error": "CODE_EMPTY", "error_description": "CODE can't be empty"}
    rest.portal.features = {"rest_offline_extended": False}
    rest.portal.save(update_fields=["features"])
    assert rest.call("feature.get", {"CODE": "rest_offline_extended"}).json()["result"] == {"value": "N"}


def test_method_get_and_methods(rest):
    from apps.sandbox.services import sandbox_webhook_create

    assert rest.call("method.get", {"name": "crm.lead.add"}).json()["result"] == {"isExisting": True,
                                                                                 "isAvailable": True}
    assert rest.call("method.get", {"name": "no.such"}).json()["result"] == {"isExisting": False,
                                                                            "isAvailable": False}
    assert rest.call("method.get").json()["result"] == {"isExisting": False, "isAvailable": False}
    _, code = sandbox_webhook_create(portal=rest.portal, scopes=["user"])
    limited = rest.client.get(f"/sandbox/acme/rest/1/{code}/method.get?name=crm.lead.add").json()["result"]
    assert limited == {"isExisting": True, "isAvailable": False}
    available = rest.client.get(f"/sandbox/acme/rest/1/{code}/methods").json()["result"]
    assert "user.current" in available and "crm.lead.add" not in available and "scope" in available
    full = rest.client.get(f"/sandbox/acme/rest/1/{code}/methods?full=true").json()["result"]
    assert "crm.lead.add" in full
    crm = rest.call("methods", {"scope": "crm"}).json()["result"]
    assert "crm.item.add" in crm and "user.current" not in crm


def test_profile(rest, make_app):
    result = rest.call("profile").json()["result"]
    assert result == {"ID": "1", "ADMIN": True, "NAME": "Sandbox", "LAST_NAME": "User 1", "PERSONAL_GENDER": "",
                      "TIME_ZONE": ""}
    assert make_app(user_id=7).call("profile").json()["result"]["ADMIN"] is False


def test_department_get(rest):
    answer = rest.call("department.get").json()
    assert answer["result"][0]["ID"] == "1" and isinstance(answer["result"][0]["SORT"], int)
    assert answer["total"] == 1
