"""The paging technique, with no database and no HTTP: which commands go in a batch and what
its answer yields."""

import pytest

from apps.exports import paging


def rows(ids):
    return [{"ID": str(i), "TITLE": f"t{i}"} for i in ids]


def test_order_by_id():
    assert paging.order_by_id({}) == (True, False)
    assert paging.order_by_id({"ID": "ASC"}) == (True, False)
    assert paging.order_by_id({" id ": "desc"}) == (True, True)
    assert paging.order_by_id({"TITLE": "ASC"}) == (False, False)
    assert paging.order_by_id({"ID": "ASC", "TITLE": "ASC"}) == (False, False)


def test_chain_commands_reference_the_previous_pages_last_row():
    commands = paging.chain_commands(method="crm.lead.list", select=["ID", "TITLE"], filter_={"STATUS_ID": "NEW"},
                                     last_id=120, descending=False, pages=3)
    assert [name for name, _m, _p in commands] == ["p0", "p1", "p2"]
    first, second, third = (params for _n, _m, params in commands)
    assert first == {"order": {"ID": "ASC"}, "filter": {"STATUS_ID": "NEW", ">ID": 120}, "start": -1,
                     "select": ["ID", "TITLE"]}
    assert second["filter"] == {"STATUS_ID": "NEW", ">ID": "$result[p0][49][ID]"}
    assert third["filter"][">ID"] == "$result[p1][49][ID]" and third["start"] == -1


def test_chain_descending_uses_less_than_and_replaces_the_agents_bound():
    commands = paging.chain_commands(method="crm.lead.list", select=[], filter_={"<ID": 900, ">ID": 5},
                                     last_id=800, descending=True, pages=2)
    first, second = (params for _n, _m, params in commands)
    assert first["filter"] == {">ID": 5, "<ID": 800} and first["order"] == {"ID": "DESC"} and "select" not in first
    assert second["filter"]["<ID"] == "$result[p0][49][ID]"


def test_chain_first_page_without_a_cursor_keeps_the_agents_filter():
    (_n, _m, params), = paging.chain_commands(method="m.list", select=[], filter_={">=ID": 10}, last_id=None,
                                              descending=False, pages=1)
    assert params["filter"] == {">=ID": 10}


def test_batch_size_is_capped_and_sized_by_the_total():
    assert paging.pages_wanted(total=None, taken=0) == 50
    assert paging.pages_wanted(total=100_000, taken=0) == 50
    assert paging.pages_wanted(total=2600, taken=2500) == 3  # 2 pages left and one to see the end
    assert paging.pages_wanted(total=2500, taken=2500) == 1
    assert paging.pages_wanted(total=10, taken=500) == 1  # rows were added since the count
    assert len(paging.chain_commands(method="m.list", select=[], filter_={}, last_id=None, descending=False,
                                     pages=99)) == 50


def test_initial_last_id_and_chain_select():
    assert paging.initial_last_id({">ID": "17"}, descending=False) == 17
    assert paging.initial_last_id({">ID": "x"}, descending=False) is None
    assert paging.initial_last_id({"<ID": 9}, descending=True) == 9
    assert paging.initial_last_id({">=ID": 9}, descending=False) is None
    assert paging.chain_select(["TITLE"]) == (["TITLE", "ID"], True)
    assert paging.chain_select(["id", "TITLE"]) == (["id", "TITLE"], False)
    assert paging.chain_select(["*"]) == (["*"], False)
    assert paging.chain_select([]) == ([], False)


def test_take_chain_stops_at_the_short_page_and_ignores_what_follows():
    results = {"p0": rows(range(1, 51)), "p1": rows(range(51, 71)), "p2": rows(range(1, 51))}
    taken = paging.take_chain(names=["p0", "p1", "p2"], results=results, errors={}, last_id=None, descending=False)
    assert taken.done and taken.last_id == 70 and [int(r["ID"]) for r in taken.rows] == list(range(1, 71))


def test_take_chain_never_takes_a_row_twice():
    # p1 ran with an unresolved reference and started from the beginning again
    results = {"p0": rows(range(101, 151)), "p1": rows(range(1, 51))}
    taken = paging.take_chain(names=["p0", "p1"], results=results, errors={}, last_id=100, descending=False)
    assert not taken.done and taken.last_id == 150 and len(taken.rows) == 50


def test_take_chain_descending():
    results = {"p0": rows(range(100, 50, -1)), "p1": rows(range(50, 40, -1))}
    taken = paging.take_chain(names=["p0", "p1"], results=results, errors={}, last_id=None, descending=True)
    assert taken.done and taken.last_id == 41 and len(taken.rows) == 60


def test_take_chain_keeps_rows_before_a_refused_page():
    results = {"p0": rows(range(1, 51))}
    errors = {"p1": {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}}
    taken = paging.take_chain(names=["p0", "p1", "p2"], results=results, errors=errors, last_id=None,
                              descending=False)
    assert taken.error["error"] == "QUERY_LIMIT_EXCEEDED" and taken.error_page == "p1"
    assert taken.last_id == 50 and len(taken.rows) == 50 and not taken.done


def test_take_chain_refuses_rows_without_an_id():
    taken = paging.take_chain(names=["p0"], results={"p0": [{"TITLE": "x"}]}, errors={}, last_id=None,
                              descending=False)
    assert taken.error["error"] == "NO_ID" and taken.rows == []


def test_take_chain_empty_list_is_the_end():
    taken = paging.take_chain(names=["p0"], results={"p0": []}, errors={}, last_id=7, descending=False)
    assert taken.done and taken.rows == [] and taken.last_id == 7


def test_offsets():
    commands = paging.offset_commands(method="crm.deal.list", select=["ID"], filter_={"CLOSED": "N"},
                                      order={"OPPORTUNITY": "DESC"}, offset=100, pages=3)
    assert [params["start"] for _n, _m, params in commands] == [100, 150, 200]
    assert commands[0][2]["order"] == {"OPPORTUNITY": "DESC"} and commands[0][2]["filter"] == {"CLOSED": "N"}
    results = {"p0": rows(range(50)), "p1": rows(range(10))}
    taken = paging.take_offsets(names=["p0", "p1", "p2"], results=results, errors={}, offset=100)
    assert taken.done and taken.next_offset == 200 and len(taken.rows) == 60


@pytest.mark.parametrize("result, expected", [
    ([{"ID": 1}], [{"ID": 1}]),
    ({"items": [{"id": 1}]}, [{"id": 1}]),
    ({"tasks": [], "other": 1}, []),
    ({"a": [], "b": []}, None),
    ("text", None),
])
def test_rows_of(result, expected):
    assert paging.rows_of(result) == expected
