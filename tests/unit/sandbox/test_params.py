"""PHP-style parameter parsing (what a portal sees in $_REQUEST) and http_build_query."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apps.sandbox.dispatch import _substitute, php_array_json
from apps.sandbox.params import ParamsError, php_build_query, php_nest, php_parse_query


def test_nested_keys_lists_and_append():
    parsed = php_parse_query("fields[TITLE]=x&fields[PHONE][0][VALUE]=1&select[0]=ID&select[1]=TITLE&id[]=4&id[]=5")
    assert parsed == {"fields": {"TITLE": "x", "PHONE": [{"VALUE": "1"}]}, "select": ["ID", "TITLE"],
                      "id": ["4", "5"]}


def test_gaps_keep_a_dict_and_plain_keys_stay():
    assert php_parse_query("a[0]=x&a[2]=y&b=1&c[") == {"a": {"0": "x", "2": "y"}, "b": "1", "c[": ""}


def test_filter_operators_survive():
    assert php_parse_query("filter[%3E%3DID]=5&filter[!STATUS_ID]=NEW") == {"filter": {">=ID": "5",
                                                                                       "!STATUS_ID": "NEW"}}


def test_depth_and_count_limits():
    with pytest.raises(ParamsError):
        php_nest([("a" + "[x]" * 20, "1")])
    with pytest.raises(ValueError):
        php_parse_query("&".join(f"k{i}=1" for i in range(6000)))


def test_build_query_like_php():
    assert php_build_query({"fields": {"TITLE": "A&B c"}, "halt": True, "none": None}) == \
        "fields%5BTITLE%5D=A%26B+c&halt=1"


keys = st.text(alphabet=st.characters(blacklist_characters="[]", blacklist_categories=("Cs",)), min_size=1,
               max_size=8).filter(lambda k: not k.isdigit())
leaf = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=10)
tree = st.recursive(leaf, lambda inner: st.dictionaries(keys, inner, min_size=1, max_size=4) |
                    st.lists(inner, min_size=1, max_size=4), max_leaves=12)


@given(st.dictionaries(keys, tree, min_size=1, max_size=4))
def test_build_then_parse_round_trips(data):
    assert php_parse_query(php_build_query(data)) == data


def test_php_array_json():
    assert php_array_json({}) == []
    assert php_array_json({"0": "a", "1": "b"}) == ["a", "b"]
    assert php_array_json({"1": "b"}) == {"1": "b"}
    assert php_array_json({"x": 1}) == {"x": 1}


def test_batch_reference_substitution():
    results = {"lead": 7, "list": [{"ID": "3"}], "flag": True, "obj": {"A": {"B": "deep"}}}
    params = {"id": "$result[lead]", "f": {"X": "n=$result[list][0][ID]!", "Y": "$result[obj][A][B]"},
              "keep": "$result[missing]", "bool": "$result[flag]", "whole": "$result[obj]"}
    assert _substitute(params, results) == {"id": "7", "f": {"X": "n=3!", "Y": "deep"}, "keep": "$result[missing]",
                                            "bool": "1", "whole": {"A": {"B": "deep"}}}
