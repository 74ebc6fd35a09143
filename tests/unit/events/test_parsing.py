"""Every event sample of shared/bitrix24/samples parses; PHP-style keys nest as PHP does; tokens
never survive into the stored data."""

import json
from pathlib import Path

import pytest

from apps.core.exceptions import InvalidRequest
from apps.events.parsing import (
    SCRUBBED,
    form_pairs,
    parse_delivery,
    parse_form,
    parse_offline_record,
    parse_pairs,
    parse_timestamp,
)

SAMPLES = Path(__file__).resolve().parents[1] / "bitrix" / "samples"
EVENT_SAMPLES = sorted(p.stem for p in SAMPLES.glob("event_*.json"))


def sample(name):
    return json.loads((SAMPLES / f"{name}.json").read_text())


def test_there_are_event_samples():
    assert len(EVENT_SAMPLES) == 10


@pytest.mark.parametrize("name", EVENT_SAMPLES)
def test_every_event_sample_parses(name):
    s = sample(name)
    form = parse_form(s["body"].encode(), max_fields=1000)
    delivery = parse_delivery(form)
    fields = dict(s["form_fields"])
    assert delivery.event == fields["event"]
    assert delivery.ts == int(fields["ts"])
    assert delivery.member_id == fields["auth[member_id]"]
    assert delivery.application_token == fields["auth[application_token]"]
    assert delivery.event_handler_id == fields.get("event_handler_id", "")
    # every data[...] leaf is where its key says, unless it is a secret (scrubbed)
    for key, value in s["form_fields"]:
        if not key.startswith("data["):
            continue
        parts = key[len("data["):-1].split("][")
        node = delivery.data
        for part in parts[:-1]:
            node = node[part]
        expected = SCRUBBED if parts[-1].lower() in ("access_token", "refresh_token", "application_token") else value
        assert node[parts[-1]] == expected, key
    assert "auth" not in delivery.data
    assert len(delivery.payload_hash) == 64


def test_nested_keys_and_values_of_the_samples():
    lead = parse_delivery(parse_form(sample("event_oncrmleadadd")["body"].encode(), max_fields=1000))
    assert lead.data == {"FIELDS": {"ID": "1000983"}}
    task = parse_delivery(parse_form(sample("event_ontaskadd")["body"].encode(), max_fields=1000))
    assert task.data["FIELDS_BEFORE"] == "undefined" and task.data["FIELDS_AFTER"] == {"ID": "123"}
    offline = parse_delivery(parse_form(sample("event_onofflineevent")["body"].encode(), max_fields=1000))
    assert offline.data == {}


def test_bot_tokens_in_data_are_scrubbed():
    bot = parse_delivery(parse_form(sample("event_onimbotmessageadd_group")["body"].encode(), max_fields=1000))
    text = json.dumps(bot.data)
    for secret in ("s1morf609228iwyjjpvfv6wsvuja4p8u", "4f9k4jpmg13usmybzuqknt2v9fh0q6rl",
                   "51856fefc120afa4b628cc82d3935cce"):
        assert secret not in text
    assert bot.data["BOT"]["567"]["AUTH"]["access_token"] == SCRUBBED
    assert bot.data["PARAMS"]["MENTIONED_LIST"] == {"567": "567"}
    assert bot.data["PARAMS"]["MESSAGE"] == ", how to set up the left menu"


def test_same_data_same_hash_whatever_the_auth():
    body = sample("event_oncrmleadadd")["body"]
    a = parse_delivery(parse_form(body.encode(), max_fields=1000))
    b = parse_delivery(parse_form(body.replace("s6p6eclrvim6da22ft9ch94ekreb52lv", "other").encode(),
                                  max_fields=1000))
    assert a.payload_hash == b.payload_hash
    c = parse_delivery(parse_form(body.replace("1000983", "1000984").encode(), max_fields=1000))
    assert c.payload_hash != a.payload_hash


def test_php_appends_and_conflicts():
    assert parse_pairs([("a[]", "x"), ("a[]", "y"), ("a[5]", "z"), ("a[]", "w")]) == {
        "a": {"0": "x", "1": "y", "5": "z", "6": "w"}}
    with pytest.raises(InvalidRequest):
        parse_pairs([("a", "x"), ("a[b]", "y")])
    with pytest.raises(InvalidRequest):
        parse_pairs([("a[b]", "y"), ("a", "x")])
    with pytest.raises(InvalidRequest):
        parse_pairs([("a" + "[x]" * 20, "deep")])


def test_field_limit_and_bad_input():
    body = "&".join(f"f{i}=1" for i in range(1001)).encode()
    with pytest.raises(InvalidRequest) as info:
        form_pairs(body, max_fields=1000)
    assert info.value.extra["limit"] == 1000
    assert len(form_pairs(body.rsplit(b"&", 1)[0], max_fields=1000)) == 1000
    with pytest.raises(InvalidRequest):
        form_pairs(b"\xff\xfe=1", max_fields=10)
    for bad in ({}, {"event": ""}, {"event": "ON CRM"}, {"event": ["x"]}):
        with pytest.raises(InvalidRequest):
            parse_delivery(bad)
    with pytest.raises(InvalidRequest):
        parse_delivery({"event": "ONCRMLEADADD", "ts": "yesterday"})


def test_offline_record_of_the_sample():
    record = sample("response_event_offline_get")["body"]["result"]["events"][0]
    parsed = parse_offline_record(record)
    assert parsed.event == "ONCRMLEADADD" and parsed.offline_id == "1" and parsed.message_id == "1"
    assert parsed.data == {} and parsed.additional == {}
    assert parsed.ts == parse_timestamp("2024-07-18T12:32:31+02:00") == 1721298751
    again = parse_offline_record(dict(record))
    assert again.payload_hash == parsed.payload_hash
    other = parse_offline_record({**record, "ID": "2", "MESSAGE_ID": "2"})
    assert other.payload_hash != parsed.payload_hash


def test_offline_records_are_read_leniently():
    assert parse_offline_record("junk").event == "UNKNOWN"
    rec = parse_offline_record({"ID": 7, "EVENT_NAME": "oncrmdealupdate", "EVENT_DATA": {"FIELDS": {"ID": 3},
                                "auth": {"access_token": "tok"}}, "TIMESTAMP_X": "not a date"})
    assert rec.event == "ONCRMDEALUPDATE" and rec.ts == 0 and rec.offline_id == "7"
    assert rec.data["auth"]["access_token"] == SCRUBBED
