"""Tests written against the mutants of apps/policy/normalize.py that the policy unit tests let
survive (mutmut 2.5.1, `make mutate MUTATE_ONLY=policy_normalize`; bench/README.md lists them):
each refusal's exact message and field (the agent reads the message to fix its request), and
the two length limits exactly at their bounds."""

import pytest

from apps.policy.errors import PolicyInputError
from apps.policy.normalize import (
    MAX_METHOD_LENGTH,
    MAX_RAW_LENGTH,
    is_valid_method,
    normalize_method,
    percent_decode,
)

GRAMMAR = "The method name may contain only letters, digits, '_' and single dots between non-empty segments."


def refusal(raw, **kwargs) -> dict:
    with pytest.raises(PolicyInputError) as info:
        normalize_method(raw, **kwargs)
    return info.value.as_dict()


@pytest.mark.parametrize(("raw", "message"), [
    (None, "The method must be a string."),
    (" " * (MAX_RAW_LENGTH + 1), "The method name is too long."),
    ("crm%252525252Edeal.list", "The method name is encoded too many times."),
    ("crm.deal.list.xml", "Only JSON is supported: drop the .xml suffix."),
    ("crm.deal.list.XML", "Only JSON is supported: drop the .xml suffix."),
    ("crm.deal.list.json.json", "The method name carries more than one format suffix."),
    ("crm.deal.list.xml.json", "The method name carries more than one format suffix."),
    ("/.json", "The method name is empty."),
    ("   ", "The method name is empty."),
    ("$result[a]", "A $result reference cannot stand in a method position."),
    ("crm.$RESULT.get", "A $result reference cannot stand in a method position."),
    ("crm..deal", GRAMMAR),
    ("a" * (MAX_METHOD_LENGTH + 1), "The method name is too long."),
    ("crm.deal%", "Invalid percent-encoding in method."),
    ("crm.deal%FF", "Percent-encoding in method does not decode to UTF-8."),
])
def test_each_refusal_has_its_exact_message_and_field(raw, message):
    assert refusal(raw) == {"code": "invalid_request", "message": message, "field": "method"}
    assert refusal(raw, field="steps.2.method") == {
        "code": "invalid_request", "message": message.replace("in method", "in steps.2.method"),
        "field": "steps.2.method"}


def test_the_raw_length_limit_is_checked_before_trimming_and_is_inclusive():
    assert MAX_RAW_LENGTH == 4096
    name = "crm.deal.list"
    padded = name + " " * (MAX_RAW_LENGTH - len(name))
    assert len(padded) == MAX_RAW_LENGTH
    assert normalize_method(padded) == name
    assert refusal(padded + " ")["message"] == "The method name is too long."
    assert not is_valid_method(padded + " ")


def test_the_method_length_limit_is_inclusive():
    assert MAX_METHOD_LENGTH == 128
    assert normalize_method("A" * MAX_METHOD_LENGTH) == "a" * MAX_METHOD_LENGTH
    assert is_valid_method("a" * MAX_METHOD_LENGTH)
    assert not is_valid_method("a" * (MAX_METHOD_LENGTH + 1))


def test_percent_decode_names_the_method_field_by_default():
    for bad, message in [("%zz", "Invalid percent-encoding in method."),
                         ("%C3", "Percent-encoding in method does not decode to UTF-8.")]:
        with pytest.raises(PolicyInputError) as info:
            percent_decode(bad)
        assert info.value.as_dict() == {"code": "invalid_request", "message": message, "field": "method"}
        with pytest.raises(PolicyInputError) as info:
            percent_decode(bad, field="params")
        assert info.value.as_dict() == {
            "code": "invalid_request", "message": message.replace("in method", "in params"), "field": "params"}
