"""Tests written against the mutants of apps/policy/batchparse.py that the policy unit tests let
survive (mutmut 2.5.1, `make mutate MUTATE_ONLY=policy_batchparse`; bench/README.md lists them):
each refusal's exact error (the older tests compared only the field), the limits exactly at their
bounds, and PHP's reading of query strings where the older table had no case."""

import dataclasses

import pytest

from apps.policy.batchparse import (
    MAX_BATCH_COMMANDS,
    MAX_KEY_LENGTH,
    MAX_QUERY_DEPTH,
    MAX_QUERY_VARS,
    BatchCommand,
    ParsedBatch,
    parse_batch,
    parse_batch_rest3,
    parse_batch_v2,
    parse_php_query,
)
from apps.policy.errors import PolicyForbidden, PolicyInputError

CONTROL = "belong to the batch itself."


def invalid(message, field):
    return {"code": "invalid_request", "message": message, "field": field}


def forbidden(message, field):
    return {"code": "denied_by_policy", "message": message, "field": field}


def error_of(params, kind=PolicyInputError) -> dict:
    with pytest.raises(kind) as info:
        parse_batch(params)
    assert type(info.value) is kind
    return info.value.as_dict()


@pytest.mark.parametrize(("params", "expected"), [
    (None, invalid("batch params must be an object (cmd, halt) or a REST 3.0 array.", "params")),
    ({"cmd": ["user.current"], "x": 1, "auth": 2},
     invalid("Unexpected batch parameters: auth, x.", "params")),
    ({"halt": 0}, invalid("A batch needs cmd.", "params.cmd")),
    ({"cmd": "user.current"}, invalid("cmd must be an object or an array of command strings.", "params.cmd")),
    ({"cmd": {}}, invalid("The batch has no commands.", "params.cmd")),
    ({"cmd": ["user.current"] * 51},
     invalid("A batch may hold at most 50 commands, not 51.", "params.cmd")),
    ({"cmd": {1: "user.current"}}, invalid("Batch command keys must be strings.", "params.cmd")),
    ({"cmd": {"": "user.current"}},
     invalid("Batch command keys must be 1 to 128 characters without control characters.", "params.cmd")),
    ({"cmd": {"a\x7fb": "user.current"}},
     invalid("Batch command keys must be 1 to 128 characters without control characters.", "params.cmd")),
    ({"cmd": {"k" * 129: "user.current"}},
     invalid("Batch command keys must be 1 to 128 characters without control characters.", "params.cmd")),
    ({"cmd": {"a": 5}}, invalid("Every batch command must be a string 'method?query'.", "params.cmd.a")),
    ({"cmd": {"a": " \t"}}, invalid("A batch command is empty.", "params.cmd.a")),
    ({"cmd": {"a": "user.current"}, "halt": 2}, invalid("halt must be 0 or 1.", "params.halt")),
    ({"cmd": {"a": "user.current"}, "halt": None}, invalid("halt must be 0 or 1.", "params.halt")),
    ({"cmd": {"a": "crm.lead.list?halt=1&auth=x"}},
     invalid("A batch command may not carry the batch control parameter 'auth'; auth, cmd, halt " + CONTROL,
             "params.cmd.a.auth")),
    ({"cmd": {"a": "crm.lead.list?x=%zz"}}, invalid("Invalid percent-encoding in params.cmd.a.", "params.cmd.a")),
    ({"cmd": {"a": "crm.lead.list?x%0Ay=1"}},
     invalid("A parameter name contains control characters.", "params.cmd.a")),
    ({"cmd": {"a": "crm.lead.list?x=a%00b"}},
     invalid("A parameter value contains a NUL character.", "params.cmd.a")),
    ({"cmd": {"a": "crm.lead.list?x" + "[a]" * 33 + "=1"}},
     invalid("Parameters nested deeper than 32 levels.", "params.cmd.a")),
    ({"cmd": {"a": "crm.lead.list?" + "&".join(f"v{i}=1" for i in range(1001))}},
     invalid("More than 1000 parameters in one query.", "params.cmd.a")),
    ([], invalid("The batch has no commands.", "params")),
    (["user.current"], invalid('Every REST 3.0 batch item must be {"method", "query"}.', "params.0")),
    ([{"method": "user.current"}, {"method": "x.y", "zeta": 1, "alpha": 2}],
     invalid("Unexpected keys in a batch item: alpha, zeta.", "params.1")),
    ([{"query": {}}], invalid("A batch item needs a method.", "params.0")),
    ([{"method": " "}], invalid("A batch item's method must be a non-empty string.", "params.0.method")),
    ([{"method": None}], invalid("A batch item's method must be a non-empty string.", "params.0.method")),
    ([{"method": "x.y", "query": "id=1"}], invalid("A batch item's query must be an object.", "params.0.query")),
    ([{"method": "x.y", "query": {"Cmd": 1}}],
     invalid("A batch command may not carry the batch control parameter 'Cmd'; auth, cmd, halt " + CONTROL,
             "params.0.query.Cmd")),
])
def test_each_refusal_has_its_exact_error(params, expected):
    assert error_of(params) == expected


@pytest.mark.parametrize(("params", "expected"), [
    ({"cmd": {"a": "batch?cmd[x]=user.current"}}, forbidden("A batch cannot contain another batch.", "params.cmd.a")),
    ({"cmd": {"a": "crm.$result[x].get"}},
     forbidden("A $result reference cannot choose the method of a batch command: name the method.",
               "params.cmd.a")),
    ({"cmd": {"a": "disk.folder.uploadfile"}},
     forbidden("File uploads and downloads cannot run inside a batch; call them directly.", "params.cmd.a")),
    ([{"method": "batch"}], forbidden("A batch cannot contain another batch.", "params.0.method")),
])
def test_each_forbidden_command_has_its_exact_error(params, expected):
    assert error_of(params, PolicyForbidden) == expected


def test_the_limits_are_inclusive():
    assert (MAX_BATCH_COMMANDS, MAX_KEY_LENGTH, MAX_QUERY_DEPTH, MAX_QUERY_VARS) == (50, 128, 32, 1000)
    assert len(parse_batch({"cmd": ["user.current"] * 50}).commands) == 50
    assert len(parse_batch([{"method": "user.current"}] * 50).commands) == 50
    assert parse_batch({"cmd": {"k" * 128: "user.current"}}).commands[0].key == "k" * 128
    deep = parse_php_query("x" + "[a]" * 32 + "=1")
    deep = deep["x"]
    for _level in range(MAX_QUERY_DEPTH):
        deep = deep["a"]
    assert deep == "1"
    assert len(parse_php_query("&".join(f"v{i}=1" for i in range(1000)))) == 1000


def test_a_query_that_is_not_a_string_is_refused_with_its_field():
    with pytest.raises(PolicyInputError) as info:
        parse_php_query(5, field="params.cmd.z")
    assert info.value.as_dict() == invalid("The query must be a string.", "params.cmd.z")
    with pytest.raises(PolicyInputError) as info:
        parse_php_query("a=%")
    assert info.value.as_dict() == invalid("Invalid percent-encoding in params.", "params")


def test_the_default_field_of_a_batch_is_params():
    with pytest.raises(PolicyInputError) as info:
        parse_batch({"cmd": {"a": 1}})
    assert info.value.field == "params.cmd.a"


def test_a_rest3_batch_keeps_its_commands_in_order_with_their_index_as_key():
    parsed = parse_batch([{"method": "a.b"}, {"method": "C.D", "query": {"id": 1}}])
    assert parsed.commands == (BatchCommand("0", "a.b", {}, ""), BatchCommand("1", "c.d", {"id": 1}, ""))
    assert parsed.halt is False and parsed.cmd_is_list is False
    assert parsed.commands[0].command == "a.b"


@pytest.mark.parametrize(("query", "expected"), [
    ("Xid=1&XX=2", {"Xid": "1", "XX": "2"}),  # only spaces are dropped from the front of a name
    ("a.b[c]=1&d e[]=2&f.g h=3", {"a_b": {"c": "1"}, "d_e": ["2"], "f_g_h": "3"}),
    ("=1&id=5&[x]=2&name=z", {"id": "5", "name": "z"}),  # an ignored variable does not end the query
    ("a[x]]=1", {"a": {"x": "1"}}),
])
def test_more_of_phps_reading_of_names(query, expected):
    assert parse_php_query(query) == expected


@pytest.mark.parametrize(("halt", "expected"), [
    ("false", False), ("FALSE", False), (" y ", True), (" N ", False), ("True", True), (" 0 ", False),
])
def test_halt_as_text(halt, expected):
    assert parse_batch({"cmd": ["user.current"], "halt": halt}).halt is expected


def test_a_result_reference_is_found_behind_five_encodings_and_a_sixth_is_refused_as_encoding():
    five = "%2525252524result"  # "$" percent-encoded five times
    with pytest.raises(PolicyForbidden) as info:
        parse_batch({"cmd": {"a": f"crm.{five}.get"}})
    assert info.value.message.startswith("A $result reference cannot choose the method")
    six = "%252525252524result"
    assert error_of({"cmd": {"a": f"crm.{six}.get"}}) == invalid(
        "The method name is encoded too many times.", "params.cmd.a")


@pytest.mark.parametrize("method", ["disk.uploadfile", "catalog.downloadall", "a.b.c.uploadx"])
def test_a_transfer_segment_anywhere_after_the_first_is_forbidden(method):
    assert error_of({"cmd": {"a": method}}, PolicyForbidden)["message"].startswith("File uploads")


@pytest.mark.parametrize("method", ["upload.thing.get", "download.list"])
def test_a_first_segment_named_upload_or_download_is_fine(method):
    assert parse_batch({"cmd": {"a": method}}).commands[0].method == method


def test_a_checked_batch_cannot_be_changed_afterwards():
    """What was checked is what is sent: a parsed batch and its commands are immutable."""
    parsed = parse_batch({"cmd": {"a": "crm.lead.get?id=1"}})
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.commands[0].method = "crm.lead.delete"
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.halt = True
    assert parsed.canonical_params() == {"cmd": {"a": "crm.lead.get?id=1"}, "halt": 0}


def test_the_defaults_of_a_command_and_a_batch():
    command = BatchCommand("k", "a.b")
    assert (command.params, command.query, command.command) == ({}, "", "a.b")
    batch = ParsedBatch(form="v2", commands=(command,))
    assert batch.halt is False and batch.cmd_is_list is False
    assert batch.canonical_params() == {"cmd": {"k": "a.b"}, "halt": 0}


def test_each_form_names_params_by_default():
    with pytest.raises(PolicyInputError) as info:
        parse_batch_v2({"cmd": {}})
    assert info.value.field == "params.cmd"
    with pytest.raises(PolicyInputError) as info:
        parse_batch_rest3([{"method": "a..b"}])
    assert info.value.field == "params.0.method"
