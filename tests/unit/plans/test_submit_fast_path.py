"""`parse_submit`'s shortcut for a plain single call (`_plainly_valid`) accepts only what the
published schema accepts, and parses it exactly as the validated path does. Bodies are drawn as
`parse_json_body` leaves them: no NUL or lone surrogate in any string or key, finite numbers."""

import string

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from apps.core.exceptions import InvalidRequest
from apps.plans.schemas import _plainly_valid, _validator, parse_submit

TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
NEAR_SLUG = st.text(string.ascii_letters + string.digits + "-_.\n ", min_size=0, max_size=70)
NEAR_METHOD = st.lists(st.text(string.ascii_letters + string.digits + "_-", max_size=8), min_size=1, max_size=20).map(
    ".".join)
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                    | TEXT, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                    max_leaves=8)
SLUG = st.from_regex(r"\A[-a-zA-Z0-9_]{1,64}\Z")
METHOD = st.from_regex(r"\A[A-Za-z0-9_]{1,9}(\.[A-Za-z0-9_]{1,9}){0,3}\Z")
VALUES = {
    "portal": SLUG | SLUG | NEAR_SLUG | JSON,
    "method": METHOD | METHOD | NEAR_METHOD | JSON,
    "params": st.dictionaries(TEXT, JSON, max_size=3) | st.dictionaries(TEXT, JSON, max_size=3) | JSON,
    "reason": TEXT | TEXT | st.just("r" * 2000) | st.just("r" * 2001) | JSON,
    "idempotency_key": st.text(string.printable, max_size=8) | st.just("k" * 255) | st.just("k" * 256) | JSON,
    "callback_url": st.sampled_from(["", "https://a.example/cb", "HTTP://x", "ftp://x", "https://" + "a" * 500])
    | JSON,
    "steps": st.just([{"name": "a", "method": "crm.lead.list"}]),
    "extra": JSON,
}


@st.composite
def bodies(draw):
    """Mostly a plain call with one or two fields bent out of shape, sometimes anything."""
    if draw(st.booleans()):
        keys = draw(st.sets(st.sampled_from(sorted(VALUES)), max_size=6))
    else:
        keys = {"portal", "method"} | draw(st.sets(st.sampled_from(["params", "reason", "idempotency_key",
                                                                     "callback_url"]), max_size=4))
    return {key: draw(VALUES[key]) for key in keys}


@settings(max_examples=600, deadline=None)
@given(bodies())
def test_the_shortcut_accepts_only_what_the_schema_accepts(body):
    plain = _plainly_valid(body)
    event("plain" if plain else "validated")
    if plain:
        assert _validator.is_valid(body), body


@settings(max_examples=300, deadline=None)
@given(portal=SLUG, method=METHOD, params=st.dictionaries(TEXT, JSON, max_size=3),
       reason=st.text(string.ascii_letters, max_size=20))
def test_a_plain_call_takes_the_shortcut_and_parses_as_validated(portal, method, params, reason):
    body = {"portal": portal, "method": method, "params": params, "reason": reason}
    assert _plainly_valid(body)
    assert parse_submit(body, header_key=None, strict_json=True) == parse_submit(body, header_key=None)


@pytest.mark.parametrize("body", [
    {"portal": "acme", "method": "crm.lead.add", "params": [1]},           # params not an object
    {"portal": "acme", "method": "crm..add"},                             # not the method grammar
    {"portal": "acme", "method": "crm.lead.add", "steps": []},            # both forms
    {"portal": "acme", "method": "crm.lead.add", "reason": "x" * 2001},   # over the bound
    {"portal": "acme", "method": "crm.lead.add", "idempotency_key": "a,b"},
    {"portal": "acme", "method": "crm.lead.add", "callback_url": "ftp://x"},
    {"portal": "ac me", "method": "crm.lead.add"},
])
def test_what_the_shortcut_refuses_still_gets_the_validators_named_error(body):
    assert not _plainly_valid(body)
    with pytest.raises(InvalidRequest) as raised:
        parse_submit(body, header_key=None, strict_json=True)
    assert raised.value.extra.get("field")
