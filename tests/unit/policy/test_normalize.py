"""normalize_method: every accepted spelling maps to one lowercase name; everything else is a 400."""

import pytest

from apps.core.exceptions import InvalidRequest
from apps.policy.errors import PolicyInputError
from apps.policy.normalize import is_valid_method, normalize_method, percent_decode


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("crm.deal.list", "crm.deal.list"),
        ("CRM.Deal.List", "crm.deal.list"),
        ("  crm.deal.list\t\n", "crm.deal.list"),
        ("/crm.deal.list", "crm.deal.list"),
        ("crm.deal.list.json", "crm.deal.list"),
        ("crm.deal.list.JSON", "crm.deal.list"),
        (" /Crm.Deal.List.Json ", "crm.deal.list"),
        ("crm%2Edeal%2elist", "crm.deal.list"),
        ("%63%72%6d.deal.list", "crm.deal.list"),
        ("crm.deal.list%2Ejson", "crm.deal.list"),
        ("%2Fcrm.deal.list", "crm.deal.list"),
        ("%20crm.deal.list%20", "crm.deal.list"),
        ("crm%252Edeal.list", "crm.deal.list"),  # double-encoded
        ("crm%2525252Edeal.list", "crm.deal.list"),  # encoded four times: the most we decode
        ("catalog.roundingRule.list", "catalog.roundingrule.list"),
        ("im.v2.Event.get", "im.v2.event.get"),
        ("sonet_group.user.add", "sonet_group.user.add"),
        ("batch", "batch"),
        ("methods", "methods"),
    ],
)
def test_accepted_spellings(raw, expected):
    assert normalize_method(raw) == expected
    assert is_valid_method(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "/",
        ".json",
        "crm..deal.list",
        ".crm.deal.list",
        "crm.deal.list.",
        "crm.deal list",
        "crm.deal.list?id=1",
        "crm.deal.list&x",
        "crm.deal.list#x",
        "$result[a]",
        "crm.$result.get",
        "crm.deal.list\x00",
        "crm.deal\x07.list",
        "crm/deal/list",
        "//crm.deal.list",
        "crm.deal.list.xml",
        "crm.deal.list.XML",
        "crm.deal.list.json.json",
        "crm.deal.list.xml.json",
        "crm.deal.list%",
        "crm.deal.list%2",
        "crm.deal.list%zz",
        "crm.deal.list%FF",  # not UTF-8
        "crm.deal.list%C3%A9",  # é: not in the grammar
        "crm.deal.\u212aill",  # Kelvin sign lowercases to ASCII k: refused before lowercasing
        "crm.deal.l\u0130st",  # dotted capital I
        "crm.deal.ｌist",  # fullwidth letter
        "crm.deal.list%3Fid%3D1",
        "crm%2E%2Edeal",
        "crm%252525252Edeal.list",  # encoded five times: more than we decode
        "a" * 129,
        "a." * 300,
    ],
)
def test_refused_spellings(raw):
    with pytest.raises(PolicyInputError) as info:
        normalize_method(raw)
    assert info.value.field == "method"
    assert info.value.status == 400
    assert info.value.as_dict()["code"] == "invalid_request"
    assert not is_valid_method(raw)


@pytest.mark.parametrize("raw", [None, 1, b"crm.deal.list", ["crm.deal.list"], {"m": 1}])
def test_non_strings_are_refused(raw):
    with pytest.raises(PolicyInputError):
        normalize_method(raw)


def test_error_is_an_invalid_request_with_the_given_field():
    with pytest.raises(InvalidRequest) as info:
        normalize_method("a b", field="steps.0.method")
    assert info.value.as_dict()["field"] == "steps.0.method"


def test_percent_decode_is_strict():
    assert percent_decode("a%20b") == "a b"
    assert percent_decode("a+b") == "a+b"
    assert percent_decode("a+b", plus_as_space=True) == "a b"
    assert percent_decode("%E2%82%AC") == "€"
    for bad in ("%", "%4", "%G0", "%E2%82"):
        with pytest.raises(PolicyInputError):
            percent_decode(bad)
