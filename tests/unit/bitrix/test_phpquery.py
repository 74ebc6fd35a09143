from urllib.parse import parse_qsl

from apps.bitrix.phpquery import batch_command, flatten, http_build_query


def test_nested_dicts_and_lists_use_php_brackets():
    q = http_build_query({"fields": {"TITLE": "x", "PHONE": [{"VALUE": "+1 555", "VALUE_TYPE": "WORK"}]},
                          "select": ["ID", "TITLE"]})
    assert q == (
        "fields[TITLE]=x&fields[PHONE][0][VALUE]=%2B1+555&fields[PHONE][0][VALUE_TYPE]=WORK"
        "&select[0]=ID&select[1]=TITLE"
    )


def test_scalars_like_php():
    assert flatten({"a": True, "b": False, "c": None, "d": 3, "e": 1.0, "f": 2.5}) == [
        ("a", "1"), ("b", "0"), ("d", "3"), ("e", "1"), ("f", "2.5"),
    ]
    assert http_build_query({"empty": [], "x": {}}) == ""


def test_values_are_percent_encoded_and_round_trip():
    params = {"filter": {">DATE": "2024-01-01T00:00:00+03:00", "%TITLE": "a&b=c ü"}}
    q = http_build_query(params)
    assert "&b" not in q.split("&", 2)[0]
    assert dict(parse_qsl(q)) == {"filter[>DATE]": "2024-01-01T00:00:00+03:00", "filter[%TITLE]": "a&b=c ü"}


def test_result_references_stay_literal():
    q = http_build_query({"ID": "$result[get_user][UF_DEPARTMENT]", "X": "$result[list][0][ID]",
                          "note": "id is $result[a][ID] ok"})
    assert q == "ID=$result[get_user][UF_DEPARTMENT]&X=$result[list][0][ID]&note=id+is+$result[a][ID]+ok"


def test_batch_command_shape():
    assert batch_command("user.current", {}) == "user.current"
    assert batch_command("crm.lead.get", {"id": 5}) == "crm.lead.get?id=5"
    assert batch_command("task.commentitem.add", [123, {"POST_MESSAGE": "hi"}]) == (
        "task.commentitem.add?0=123&1[POST_MESSAGE]=hi"
    )
