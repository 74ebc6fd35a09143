"""Export file encoding and appending from the saved length."""

import csv
import io
import json

from apps.exports import files


def test_jsonl_rows_and_dropped_id():
    data = files.encode([{"ID": "1", "TITLE": "Ä"}, {"ID": "2", "TITLE": None}], fmt="jsonl", columns=[],
                        drop_id=True, header=False)
    assert [json.loads(line) for line in data.decode().splitlines()] == [{"TITLE": "Ä"}, {"TITLE": None}]
    assert files.encode([], fmt="jsonl", columns=[], drop_id=False, header=False) == b""


def test_csv_header_cells_and_quoting():
    rows = [{"ID": "1", "TITLE": 'a,"b"\nc', "PHONE": [{"VALUE": "+1"}], "OPENED": True, "X": None}]
    data = files.encode(rows, fmt="csv", columns=["ID", "TITLE", "PHONE", "OPENED", "X", "MISSING"], drop_id=False,
                        header=True)
    table = list(csv.reader(io.StringIO(data.decode())))
    assert table == [["ID", "TITLE", "PHONE", "OPENED", "X", "MISSING"],
                     ["1", 'a,"b"\nc', '[{"VALUE":"+1"}]', "Y", "", ""]]


def test_columns():
    assert files.columns_for(["ID", "TITLE", "TITLE"], None, False) == ["ID", "TITLE"]
    assert files.columns_for(["TITLE", "ID"], None, True) == ["TITLE"]
    assert files.columns_for(["*", "UF_*"], {"ID": 1, "NAME": 2}, False) == ["ID", "NAME"]
    assert files.columns_for([], {"ID": 1, "NAME": 2}, True) == ["NAME"]


def test_append_cuts_off_what_was_never_saved(tmp_path):
    path = tmp_path / "e.jsonl"
    size = files.append(path, at=0, data=b"one\n")
    assert size == 4
    with open(path, "ab") as handle:
        handle.write(b"half a ro")  # a worker died here
    size = files.append(path, at=size, data=b"two\n")
    assert path.read_bytes() == b"one\ntwo\n" and size == 8
    assert files.remove(path) and not files.remove(path)
