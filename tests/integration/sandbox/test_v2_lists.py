"""v2 list paging (50 per page, next, total, start=-1), ID filters and order."""

import pytest

pytestmark = pytest.mark.django_db


def ids(body) -> list[int]:
    return [int(row["ID"]) for row in body["result"]]


def test_paging_by_50_with_next_and_total(rest, make_leads):
    make_leads(120)
    first = rest.call("crm.lead.list").json()
    assert ids(first) == list(range(1, 51))
    assert first["total"] == 120 and first["next"] == 50

    second = rest.call("crm.lead.list", {"start": first["next"]}).json()
    assert ids(second) == list(range(51, 101))
    assert second["next"] == 100

    last = rest.call("crm.lead.list", {"start": 100}).json()
    assert ids(last) == list(range(101, 121))
    assert last["total"] == 120
    assert "next" not in last

    beyond = rest.call("crm.lead.list", {"start": 500}).json()
    assert beyond["result"] == [] and beyond["total"] == 120 and "next" not in beyond


def test_exactly_50_rows_has_no_next(rest, make_leads):
    make_leads(50)
    body = rest.call("crm.lead.list").json()
    assert len(body["result"]) == 50 and body["total"] == 50 and "next" not in body


def test_start_minus_one_skips_count(rest, make_leads):
    make_leads(60)
    body = rest.call("crm.lead.list", {"start": -1, "order": {"ID": "ASC"}}).json()
    assert ids(body) == list(range(1, 51))
    assert "total" not in body and "next" not in body


def test_keyset_export_pattern(rest, make_leads):
    """The documented huge-data pattern: order by ID, filter >ID, start=-1, stop on a short page."""
    make_leads(73)
    seen, last_id = [], 0
    while True:
        body = rest.call("crm.lead.list", {"order": {"ID": "ASC"}, "filter": {">ID": last_id}, "start": -1}).json()
        page = ids(body)
        seen += page
        if len(page) < 50:
            break
        last_id = page[-1]
    assert seen == list(range(1, 74))


@pytest.mark.parametrize("flt,expected", [
    ({">ID": 7}, [8, 9, 10]),
    ({">=ID": 7}, [7, 8, 9, 10]),
    ({"<ID": 3}, [1, 2]),
    ({"<=ID": 3}, [1, 2, 3]),
    ({"=ID": 4}, [4]),
    ({"ID": 4}, [4]),
    ({"ID": [2, 5]}, [2, 5]),
    ({"!ID": 1, "<ID": 4}, [2, 3]),
    ({">ID": 2, "<ID": 6}, [3, 4, 5]),
    ({">ID": "x"}, list(range(1, 11))),
])
def test_id_filters(rest, make_leads, flt, expected):
    make_leads(10)
    body = rest.call("crm.lead.list", {"filter": flt}).json()
    assert ids(body) == expected
    assert body["total"] == len(expected)


def test_filter_on_other_fields_and_order_desc(rest, make_leads):
    make_leads(3, STATUS_ID="NEW")
    make_leads(2, STATUS_ID="IN_PROCESS")
    body = rest.call("crm.lead.list", {"filter": {"STATUS_ID": "IN_PROCESS"}, "order": {"ID": "DESC"},
                                       "select": ["ID", "STATUS_ID"]}).json()
    assert body["result"] == [{"ID": "5", "STATUS_ID": "IN_PROCESS"}, {"ID": "4", "STATUS_ID": "IN_PROCESS"}]
    like = rest.call("crm.lead.list", {"filter": {"%TITLE": "lead 3"}}).json()
    assert ids(like) == [3]


def test_order_desc_pages(rest, make_leads):
    make_leads(55)
    body = rest.call("crm.lead.list", {"order": {"ID": "DESC"}, "start": 50}).json()
    assert ids(body) == [5, 4, 3, 2, 1]


def test_select_defaults_hide_multifields_and_uf(rest):
    rest.call("crm.contact.add", {"fields": {"NAME": "A", "EMAIL": [{"VALUE": "a@b.c"}], "UF_CRM_X": "1"}})
    row = rest.call("crm.contact.list").json()["result"][0]
    assert "EMAIL" not in row and "UF_CRM_X" not in row and row["HAS_EMAIL"] == "Y"
    full = rest.call("crm.contact.list", {"select": ["*", "UF_*", "EMAIL"]}).json()["result"][0]
    assert full["EMAIL"][0]["VALUE"] == "a@b.c" and full["UF_CRM_X"] == "1" and full["NAME"] == "A"


def test_tasks_v2_list_paging(rest):
    for i in range(51):
        assert rest.call("tasks.task.add", {"fields": {"TITLE": f"T{i}", "RESPONSIBLE_ID": 3}}).status_code == 200
    body = rest.call("tasks.task.list", {"filter": {">ID": 0}, "select": ["ID", "TITLE"]}).json()
    assert len(body["result"]["tasks"]) == 50 and body["total"] == 51 and body["next"] == 50
    assert body["result"]["tasks"][0] == {"id": "1", "title": "T0"}
