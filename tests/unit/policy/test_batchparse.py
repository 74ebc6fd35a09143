"""Batch parameters: commands, PHP query strings, and the fixed refusals."""

import pytest

from apps.core.exceptions import DeniedByPolicy, InvalidRequest
from apps.policy.batchparse import BatchCommand, parse_batch, parse_php_query
from apps.policy.errors import PolicyForbidden, PolicyInputError

# ---------------------------------------------------------------- PHP query strings


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {}),
        ("id=5", {"id": "5"}),
        ("fields[TITLE]=x&fields[OPPORTUNITY]=10", {"fields": {"TITLE": "x", "OPPORTUNITY": "10"}}),
        ("select[0]=ID&select[1]=TITLE", {"select": ["ID", "TITLE"]}),
        ("select[]=ID&select[]=TITLE", {"select": ["ID", "TITLE"]}),
        ("filter[>ID]=5&filter[%3CID]=9", {"filter": {">ID": "5", "<ID": "9"}}),
        ("filter[!STAGE_ID][]=WON&filter[!STAGE_ID][]=LOSE", {"filter": {"!STAGE_ID": ["WON", "LOSE"]}}),
        ("a[1]=x&a[0]=y", {"a": {"1": "x", "0": "y"}}),  # not in order: stays an object
        ("a[5]=x&a[]=y", {"a": {"5": "x", "6": "y"}}),  # [] appends after the highest int key
        ("fields[TITLE]=a+b%20c%26d", {"fields": {"TITLE": "a b c&d"}}),
        ("x=1&x=2", {"x": "2"}),  # last wins
        ("x=1&x[a]=2", {"x": {"a": "2"}}),
        ("x[a]=2&x=1", {"x": "1"}),
        ("flag", {"flag": ""}),
        ("a.b=1&c d=2", {"a_b": "1", "c_d": "2"}),  # PHP mangles dots and spaces in the base name
        ("%20id=1", {"id": "1"}),  # leading spaces dropped
        ("=1&[x]=2", {}),  # empty base names are ignored
        ("a[b=1", {"a_b": "1"}),  # unmatched first bracket is not an index
        ("a[b]c=1", {"a": {"b": "1"}}),  # junk after an index is ignored
        ("a[b][c=1", {"a": {"b": "1"}}),  # unterminated later index is ignored
        ("0=a&1=b", {"0": "a", "1": "b"}),
        ("&&id=5&&", {"id": "5"}),
        ("v=%E2%82%AC", {"v": "€"}),
        ("fields[ID]=$result[get][ID]", {"fields": {"ID": "$result[get][ID]"}}),
        ("fields[TITLE]=a=b", {"fields": {"TITLE": "a=b"}}),
    ],
)
def test_php_query(query, expected):
    assert parse_php_query(query) == expected


@pytest.mark.parametrize(
    "query",
    [
        "a=%zz",
        "a=%",
        "a=%FF",
        "a%ZZ=1",
        "a%0A=1",
        "a=%00",
        "a" + "[x]" * 33 + "=1",
        "&".join(f"v{i}=1" for i in range(1001)),
    ],
)
def test_php_query_refusals(query):
    with pytest.raises(PolicyInputError) as info:
        parse_php_query(query, field="params.cmd.a")
    assert info.value.field == "params.cmd.a"


# ---------------------------------------------------------------- v2 batch


def test_v2_dict_form():
    parsed = parse_batch(
        {
            "halt": 1,
            "cmd": {
                "get": "CRM.Deal.Get.json?id=5",
                "list": "crm.deal.list?filter[>ID]=5&select[]=ID",
                "add": "/crm.lead.add?fields[TITLE]=Hi%20there&fields[ASSIGNED_BY_ID]=$result[get][ASSIGNED_BY_ID]",
            },
        }
    )
    assert parsed.form == "v2"
    assert parsed.halt is True
    assert parsed.commands == (
        BatchCommand("get", "crm.deal.get", {"id": "5"}, "id=5"),
        BatchCommand("list", "crm.deal.list", {"filter": {">ID": "5"}, "select": ["ID"]}, "filter[>ID]=5&select[]=ID"),
        BatchCommand(
            "add",
            "crm.lead.add",
            {"fields": {"TITLE": "Hi there", "ASSIGNED_BY_ID": "$result[get][ASSIGNED_BY_ID]"}},
            "fields[TITLE]=Hi%20there&fields[ASSIGNED_BY_ID]=$result[get][ASSIGNED_BY_ID]",
        ),
    )
    # what is sent carries the normalised names and the queries exactly as given
    assert parsed.canonical_params() == {
        "cmd": {
            "get": "crm.deal.get?id=5",
            "list": "crm.deal.list?filter[>ID]=5&select[]=ID",
            "add": "crm.lead.add?fields[TITLE]=Hi%20there&fields[ASSIGNED_BY_ID]=$result[get][ASSIGNED_BY_ID]",
        },
        "halt": 1,
    }


def test_v2_list_form_and_command_without_query():
    parsed = parse_batch({"cmd": ["user.current", "server.time?"]})
    assert [(c.key, c.method, c.params) for c in parsed.commands] == [
        ("0", "user.current", {}),
        ("1", "server.time", {}),
    ]
    assert parsed.halt is False
    assert parsed.canonical_params() == {"cmd": ["user.current", "server.time"], "halt": 0}


@pytest.mark.parametrize(("halt", "expected"), [(0, False), (1, True), (True, True), (False, False), ("0", False),
                                               ("1", True), ("Y", True), ("n", False), ("true", True)])
def test_halt_values(halt, expected):
    parsed = parse_batch({"cmd": ["user.current"], "halt": halt})
    assert parsed.halt is expected
    assert parsed.canonical_params() == {"cmd": ["user.current"], "halt": 1 if expected else 0}


@pytest.mark.parametrize(
    "method", ["batch", "BATCH", " batch.json", "/batch", "b%61tch", "batch%2Ejson", "%62%61%74%63%68"]
)
def test_nested_batch_is_forbidden(method):
    with pytest.raises(PolicyForbidden) as info:
        parse_batch({"cmd": {"inner": f"{method}?cmd[a]=crm.lead.delete%3Fid%3D1"}})
    assert isinstance(info.value, DeniedByPolicy)
    assert info.value.status == 403
    assert info.value.field == "params.cmd.inner"
    with pytest.raises(PolicyForbidden):
        parse_batch([{"method": method, "query": {}}])


@pytest.mark.parametrize(
    "command", ["$result[a][METHOD]?id=1", "crm.$result[a].get", "%24result[a]", "%2524result", "$RESULT[x]"]
)
def test_result_reference_in_method_position_is_forbidden(command):
    with pytest.raises(PolicyForbidden, match=r"\$result"):
        parse_batch({"cmd": {"a": "crm.deal.get?id=1", "b": command}})


def test_result_reference_in_values_is_fine():
    parsed = parse_batch({"cmd": {"a": "crm.deal.get?id=1", "b": "crm.deal.update?id=$result[a][ID]&fields[TITLE]=x"}})
    assert parsed.commands[1].params == {"id": "$result[a][ID]", "fields": {"TITLE": "x"}}


def test_fifty_commands_pass_fifty_one_fail():
    parse_batch({"cmd": {f"c{i}": "user.current" for i in range(50)}})
    with pytest.raises(PolicyInputError, match="at most 50"):
        parse_batch({"cmd": {f"c{i}": "user.current" for i in range(51)}})
    with pytest.raises(PolicyInputError, match="at most 50"):
        parse_batch({"cmd": ["user.current"] * 51})
    with pytest.raises(PolicyInputError, match="at most 50"):
        parse_batch([{"method": "user.current"}] * 51)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "params.cmd"),
        ({"cmd": {}}, "params.cmd"),
        ({"cmd": []}, "params.cmd"),
        ({"cmd": "crm.deal.get"}, "params.cmd"),
        ({"cmd": {"a": ""}}, "params.cmd.a"),
        ({"cmd": {"a": "   "}}, "params.cmd.a"),
        ({"cmd": {"a": "?id=1"}}, "params.cmd.a"),
        ({"cmd": {"a": None}}, "params.cmd.a"),
        ({"cmd": {"a": 5}}, "params.cmd.a"),
        ({"cmd": {"a": {"method": "crm.deal.get"}}}, "params.cmd.a"),
        ({"cmd": [["crm.deal.get"]]}, "params.cmd.0"),
        ({"cmd": {1: "crm.deal.get"}}, "params.cmd"),
        ({"cmd": {None: "crm.deal.get"}}, "params.cmd"),
        ({"cmd": {"": "crm.deal.get"}}, "params.cmd"),
        ({"cmd": {"a\nb": "crm.deal.get"}}, "params.cmd"),
        ({"cmd": {"a": "crm.deal%ZZ.get"}}, "params.cmd.a"),
        ({"cmd": {"a": "crm.deal.get?id=%E2%82"}}, "params.cmd.a"),
        ({"cmd": {"a": "crm.deal.get?id=%"}}, "params.cmd.a"),
        ({"cmd": {"a": "crm deal get"}}, "params.cmd.a"),
        ({"cmd": {"a": "crm.deal.get.xml?id=1"}}, "params.cmd.a"),
        ({"cmd": {"a": "crm.deal.get"}, "halt": 2}, "params.halt"),
        ({"cmd": {"a": "crm.deal.get"}, "halt": "maybe"}, "params.halt"),
        ({"cmd": {"a": "crm.deal.get"}, "auth": "x"}, "params"),
        ("cmd[a]=crm.deal.get", "params"),
        (None, "params"),
    ],
)
def test_v2_refusals(params, field):
    with pytest.raises(PolicyInputError) as info:
        parse_batch(params)
    assert isinstance(info.value, InvalidRequest)
    assert info.value.field == field
    assert info.value.message


# ---------------------------------------------------------------- REST 3.0 batch


def test_rest3_form():
    parsed = parse_batch(
        [
            {"method": "Tasks.Task.Get", "query": {"id": 5}},
            {"method": "tasks.task.list"},
            {"method": "x.y", "query": None},
        ]
    )
    assert parsed.form == "rest3"
    assert [(c.key, c.method, c.params) for c in parsed.commands] == [
        ("0", "tasks.task.get", {"id": 5}),
        ("1", "tasks.task.list", {}),
        ("2", "x.y", {}),
    ]
    assert parsed.canonical_params() == [
        {"method": "tasks.task.get", "query": {"id": 5}},
        {"method": "tasks.task.list", "query": {}},
        {"method": "x.y", "query": {}},
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "params"),
        (["tasks.task.get"], "params.0"),
        ([{"query": {}}], "params.0"),
        ([{"method": ""}], "params.0.method"),
        ([{"method": 5}], "params.0.method"),
        ([{"method": "tasks.task.get", "query": "id=5"}], "params.0.query"),
        ([{"method": "tasks.task.get", "query": [1]}], "params.0.query"),
        ([{"method": "tasks.task.get", "extra": 1}], "params.0"),
        ([{"method": "tasks..task"}], "params.0.method"),
    ],
)
def test_rest3_refusals(body, field):
    with pytest.raises(PolicyInputError) as info:
        parse_batch(body)
    assert info.value.field == field


@pytest.mark.parametrize(
    "method",
    [
        "disk.folder.uploadFile",
        "disk.file.uploadversion",
        "im.v2.File.upload",
        "catalog.product.download",
        "vendor.thing.downloadall",
    ],
)
def test_file_transfer_inside_a_batch_is_forbidden(method):
    with pytest.raises(PolicyForbidden, match="File uploads"):
        parse_batch({"cmd": {"a": f"{method}?id=1"}})
    with pytest.raises(PolicyForbidden):
        parse_batch([{"method": method}])


def test_names_merely_containing_upload_are_fine():
    parsed = parse_batch({"cmd": {"a": "crm.item.list?filter[uploadedBy]=1", "b": "vendor.fileupload.get"}})
    assert [c.method for c in parsed.commands] == ["crm.item.list", "vendor.fileupload.get"]
    assert parsed.commands[0].params == {"filter": {"uploadedBy": "1"}}


# ---------------------------------------------------------------- batch control keys in a command


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"cmd": {"b": "crm.lead.list?x=1&cmd[b]=im.message.add"}}, "params.cmd.b.cmd"),
        ({"cmd": {"b": "crm.lead.list?auth=stolen"}}, "params.cmd.b.auth"),
        ({"cmd": {"b": "crm.lead.list?halt=1"}}, "params.cmd.b.halt"),
        ({"cmd": {"b": "crm.lead.list?AUTH=x"}}, "params.cmd.b.AUTH"),
        ({"cmd": {"b": "crm.lead.list?Halt=0"}}, "params.cmd.b.Halt"),
        ({"cmd": {"b": "crm.lead.list?%63md[a]=user.current"}}, "params.cmd.b.cmd"),
        ({"cmd": {"b": "crm.lead.list?+auth=x"}}, "params.cmd.b.auth"),
        ({"cmd": {"b": "crm.lead.list?auth[access_token]=x"}}, "params.cmd.b.auth"),
        ({"cmd": ["user.current", "crm.lead.list?cmd=x"]}, "params.cmd.1.cmd"),
        ([{"method": "crm.item.list", "query": {"auth": "x"}}], "params.0.query.auth"),
        ([{"method": "crm.item.list", "query": {"cmd": {"a": "x"}}}], "params.0.query.cmd"),
        ([{"method": "crm.item.list", "query": {"HALT": 1}}], "params.0.query.HALT"),
    ],
)
def test_commands_may_not_carry_batch_control_keys(params, field):
    with pytest.raises(PolicyInputError) as info:
        parse_batch(params)
    assert info.value.field == field
    assert "control parameter" in info.value.message


@pytest.mark.parametrize("query", ["filter[auth]=x", "fields[CMD]=1", "select[]=halt", "authority=1", "x_cmd=1"])
def test_control_words_below_the_top_level_or_inside_names_are_fine(query):
    parsed = parse_batch({"cmd": {"a": f"crm.lead.list?{query}"}})
    assert parsed.commands[0].query == query
