"""crm.item.* for smart processes (api-reference/crm/universal)."""

import pytest

pytestmark = pytest.mark.django_db

SPA = 1036


def test_item_lifecycle(rest):
    added = rest.call("crm.item.add", {"entityTypeId": SPA, "fields": {"title": "First", "opportunity": "12.5",
                                                                        "ufCrm5_123": "x"}})
    assert added.status_code == 200, added.content
    item = added.json()["result"]["item"]
    assert isinstance(item["id"], int) and item["title"] == "First" and item["opportunity"] == 12.5
    assert item["entityTypeId"] == SPA and item["createdBy"] == 1 and item["ufCrm5_123"] == "x"
    got = rest.call("crm.item.get", {"entityTypeId": SPA, "id": item["id"]}).json()["result"]["item"]
    assert got == item
    updated = rest.call("crm.item.update", {"entityTypeId": SPA, "id": item["id"],
                                            "fields": {"TITLE": "Renamed", "stageId": "DT1036_0:WON"}})
    assert updated.json()["result"]["item"]["title"] == "Renamed"
    assert updated.json()["result"]["item"]["previousStageId"] == "DT1036_0:NEW"
    listed = rest.call("crm.item.list", {"entityTypeId": SPA, "select": ["id", "title"],
                                         "filter": {"=title": "Renamed"}}).json()
    assert listed["result"] == {"items": [{"id": item["id"], "title": "Renamed"}]} and listed["total"] == 1
    assert rest.call("crm.item.delete", {"entityTypeId": SPA, "id": item["id"]}).json()["result"] == []
    assert rest.call("crm.item.list", {"entityTypeId": SPA}).json()["result"] == {"items": []}


def test_item_errors(rest):
    missing = rest.call("crm.item.get", {"entityTypeId": SPA, "id": 999})
    assert missing.status_code == 400
    assert missing.json() == {"error": "NOT_FOUND", "error_description": "Element not found"}
    no_type = rest.call("crm.item.get", {"entityTypeId": 77, "id": 1})
    assert no_type.status_code == 400 and no_type.json()["error"] == "NOT_FOUND"
    assert rest.call("crm.item.delete", {"entityTypeId": SPA, "id": 5}).json()["error"] == "NOT_FOUND"
    assert rest.call("crm.item.add", {"entityTypeId": SPA, "fields": {"opportunity": "NaN"}}).status_code == 400


def test_item_fields(rest):
    fields = rest.call("crm.item.fields", {"entityTypeId": SPA}).json()["result"]["fields"]
    assert fields["title"]["upperName"] == "TITLE" and fields["id"]["isReadOnly"] is True


def test_item_list_pages(rest):
    for i in range(55):
        rest.call("crm.item.add", {"entityTypeId": SPA, "fields": {"title": f"i{i}"}})
    first = rest.call("crm.item.list", {"entityTypeId": SPA}).json()
    assert len(first["result"]["items"]) == 50 and first["next"] == 50 and first["total"] == 55
