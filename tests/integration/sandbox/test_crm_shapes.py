"""CRM records carry the documented field set; multi-fields carry IDs and follow the documented
add/change/delete rules; HAS_* flags follow them; operating_reset_at is an integer."""

import pytest

from .conftest import sample

pytestmark = pytest.mark.django_db

LEAD_SAMPLE = sample("response_crm_lead_list")["body"]["result"][0]


def _fields(row: dict) -> set[str]:
    return {k for k in row if not k.startswith("UF_")}


def test_lead_list_has_the_documented_fields(rest):
    rest.call("crm.lead.add", {"fields": {"TITLE": "x", "UF_CRM_1": "a"}})
    row = rest.call("crm.lead.list", {"select": ["*", "UF_*"]}).json()["result"][0]
    assert _fields(row) == _fields(LEAD_SAMPLE)
    assert row["UF_CRM_1"] == "a"
    plain = rest.call("crm.lead.list").json()["result"][0]
    assert _fields(plain) == _fields(LEAD_SAMPLE) and "UF_CRM_1" not in plain


@pytest.mark.parametrize("entity,expected", [
    ("deal", {"TAX_VALUE", "QUOTE_ID", "ADDITIONAL_INFO", "LOCATION_ID", "IS_RECURRING", "IS_REPEATED_APPROACH",
              "MOVED_BY_ID", "MOVED_TIME", "LAST_ACTIVITY_BY", "LAST_ACTIVITY_TIME", "UTM_SOURCE"}),
    ("contact", {"PHOTO", "LEAD_ID", "HAS_IMOL", "ORIGIN_VERSION", "FACE_ID", "ADDRESS_LOC_ADDR_ID", "UTM_TERM",
                 "LAST_ACTIVITY_BY"}),
])
def test_deal_and_contact_fields(rest, entity, expected):
    new_id = rest.call(f"crm.{entity}.add", {"fields": {"TITLE": "t", "NAME": "n"}}).json()["result"]
    row = rest.call(f"crm.{entity}.get", {"id": new_id}).json()["result"]
    assert expected <= set(row)


def test_multifields_have_ids_add_change_delete(rest):
    lead_id = rest.call("crm.lead.add", {"fields": {"TITLE": "m", "PHONE": [
        {"VALUE": "+100", "VALUE_TYPE": "WORK"}, {"VALUE": "+200", "VALUE_TYPE": "HOME"}]}}).json()["result"]
    row = rest.call("crm.lead.get", {"id": lead_id}).json()["result"]
    phones = row["PHONE"]
    assert [set(p) for p in phones] == [{"ID", "VALUE_TYPE", "VALUE", "TYPE_ID"}] * 2
    assert [p["VALUE"] for p in phones] == ["+100", "+200"] and phones[0]["TYPE_ID"] == "PHONE"
    assert row["HAS_PHONE"] == "Y" and row["HAS_EMAIL"] == "N" and "EMAIL" not in row
    first, second = phones[0]["ID"], phones[1]["ID"]
    assert first != second and first.isdigit()
    # no ID: added; ID + empty VALUE: deleted; ID + value: changed; the rest stays
    rest.call("crm.lead.update", {"id": lead_id, "fields": {
        "PHONE": [{"ID": first, "VALUE": ""}, {"VALUE": "+300"}], "EMAIL": [{"VALUE": "a@b.c"}]}})
    row = rest.call("crm.lead.get", {"id": lead_id}).json()["result"]
    assert [p["VALUE"] for p in row["PHONE"]] == ["+200", "+300"]
    assert row["PHONE"][0]["ID"] == second
    assert row["HAS_EMAIL"] == "Y" and row["EMAIL"][0]["TYPE_ID"] == "EMAIL"
    rest.call("crm.lead.update", {"id": lead_id, "fields": {"PHONE": [{"ID": second, "VALUE": "+222"}]}})
    phones = rest.call("crm.lead.get", {"id": lead_id}).json()["result"]["PHONE"]
    assert [(p["ID"], p["VALUE"]) for p in phones] == [(second, "+222"), (phones[1]["ID"], "+300")]
    rest.call("crm.lead.update", {"id": lead_id, "fields": {"PHONE": [{"ID": p["ID"], "VALUE": ""}
                                                                      for p in phones]}})
    row = rest.call("crm.lead.get", {"id": lead_id}).json()["result"]
    assert "PHONE" not in row and row["HAS_PHONE"] == "N"
    listed = rest.call("crm.lead.list", {"select": ["ID", "EMAIL"]}).json()["result"][0]
    assert listed["EMAIL"][0]["VALUE"] == "a@b.c"


def test_status_move_sets_moved_and_closed(rest):
    lead_id = rest.call("crm.lead.add", {"fields": {"TITLE": "s"}}).json()["result"]
    row = rest.call("crm.lead.get", {"id": lead_id}).json()["result"]
    assert row["DATE_CLOSED"] == "" and row["STATUS_SEMANTIC_ID"] == "P" and row["MOVED_BY_ID"] == "1"
    rest.call("crm.lead.update", {"id": lead_id, "fields": {"STATUS_ID": "CONVERTED"}})
    row = rest.call("crm.lead.get", {"id": lead_id}).json()["result"]
    assert row["STATUS_SEMANTIC_ID"] == "S" and row["DATE_CLOSED"]


def test_operating_reset_at_is_an_integer(rest):
    time = rest.call("crm.lead.list").json()["time"]
    assert isinstance(time["operating_reset_at"], int) and not isinstance(time["operating_reset_at"], bool)


def test_user_current_has_the_samples_fields_and_types(rest):
    expected = sample("response_batch")["body"]["result"]["result"]["get_user"]
    got = rest.call("user.current").json()["result"]
    assert {k: type(v) for k, v in got.items()} == {k: type(v) for k, v in expected.items()}
