"""apps.core.api.loads_strict: JSON that every later step (canonical hash, PostgreSQL jsonb, the
portal) can take, or an InvalidRequest naming the offending field."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apps.core.api import MAX_JSON_DEPTH, check_json_value, loads_strict
from apps.core.canonical import canonical_json
from apps.core.exceptions import InvalidRequest


def refused(text) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        loads_strict(text)
    return info.value


@pytest.mark.parametrize("text, field", [
    ('{"method": "user.current", "method": "crm.lead.delete"}', "method"),
    ('{"a": {"b": [{"c": 1, "c": 1}]}}', "a.b.0.c"),
    ('{"a": 1, "\\u0061": 2}', "a"),
    ('[{"x": {"y": {}, "y": {}}}]', "0.x.y"),
])
def test_duplicate_keys_are_refused_at_any_depth(text, field):
    error = refused(text)
    assert error.extra["field"] == field
    assert "twice" in error.message


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1e309", "NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused(number):
    assert refused(f'{{"params": {{"n": [1, {number}]}}}}').extra["field"] == "params.n.1"


def test_huge_integers_are_refused_not_crashed():
    assert refused('{"n": ' + "7" * 5000 + "}").extra["field"] == "body"


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "x\\ud83d", "\\ude00\\ud83d"])
def test_lone_surrogates_are_refused_in_values_and_keys(escape):
    assert refused(f'{{"reason": "{escape}"}}').extra["field"] == "reason"
    assert "surrogate" in refused(f'{{"p": {{"{escape}": 1}}}}').message


def test_a_surrogate_pair_is_one_valid_character():
    assert loads_strict('{"t": "\\ud83d\\ude00"}') == {"t": "\U0001f600"}


def test_nul_is_refused_in_values_and_keys():
    assert refused('{"a": ["ok", "x\\u0000"]}').extra["field"] == "a.1"
    assert "NUL" in refused('{"a\\u0000": 1}').message


def test_depth_64_is_accepted_and_65_refused():
    at_limit = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert loads_strict(at_limit) is not None
    error = refused("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))
    assert error.extra["field"] == ".".join(["0"] * MAX_JSON_DEPTH)


@pytest.mark.parametrize("depth", [1000, 100_000])
def test_depth_beyond_the_parser_is_a_400_not_a_recursion_error(depth):
    assert refused('{"a": ' * depth + "1" + "}" * depth).extra["field"] == "body"
    assert refused("[" * depth + "]" * depth).extra["field"] == "body"


@pytest.mark.parametrize("raw", [b"\xff", b'"\xed\xa0\x80"', "\ufeff{}".encode(), '{"a": 1}'.encode("utf-16")])
def test_bytes_that_are_not_utf8_json_are_refused(raw):
    assert refused(raw).extra["field"] == "body"


def test_check_json_value_names_fields_under_a_prefix():
    with pytest.raises(InvalidRequest) as info:
        check_json_value({"x": [float("inf")]}, field="params")
    assert info.value.extra["field"] == "params.x.0"


def test_check_json_value_is_iterative():
    value: list = []
    for _ in range(50_000):
        value = [value]
    with pytest.raises(InvalidRequest):
        check_json_value(value)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(JSON)
def test_whatever_is_accepted_can_be_hashed_and_stored(value):
    text = json.dumps(value)
    try:
        decoded = loads_strict(text)
    except InvalidRequest as exc:
        assert "\x00" in text or "\\u0000" in text, exc.message
        return
    canonical_json(decoded).encode("utf-8")  # neither ValueError (non-finite) nor UnicodeEncodeError
    assert decoded == value
