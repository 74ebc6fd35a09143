"""Tests written against the mutants of apps/audit/services.py that the audit test set let
survive (mutmut 2.5.1, `make mutate MUTATE_ONLY=audit`; bench/README.md lists them): who an entry
names as its actor, what it stores, what one write costs, the collected writes, the checkpoint
sinks' failures and the sink error's place in the error catalogue; then (the mutants from
`publish_checkpoints` on) which checkpoints are published, reading them back, both entry readers,
every verification result and the export's refusals, records, lines and chunks."""

import contextlib
import csv
import dataclasses
import datetime
import http.client
import io
import json
import logging
import os
import stat
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from apps.audit import registry
from apps.audit import services as audit_services
from apps.audit.keys import macs
from apps.audit.models import AuditCheckpoint, AuditEntry, AuditHead
from apps.audit.services import (
    CheckpointSinkError,
    VerifyResult,
    _locked_head,
    _rows,
    _sqlite_rows,
    actor_of,
    audit_checkpoint,
    audit_collected,
    audit_export_lines,
    audit_export_prepare,
    audit_record,
    audit_verify,
    load_checkpoints,
    publish_checkpoints,
)
from apps.core.api import error_response
from apps.core.exceptions import ApplicationError, error_codes

from .conftest import tampering

pytestmark = pytest.mark.django_db


@dataclass
class PlanLike:
    """What `audit_record(plan=...)` reads of a plan: its primary key."""

    pk: uuid.UUID


# --- the sink error in the error catalogue -----------------------------------------------------


def test_a_sink_outage_is_a_503_with_its_own_code():
    assert error_codes()["checkpoint_sink_failed"] == (503,)
    response = error_response(CheckpointSinkError("The checkpoint URL answered HTTP 500."))
    assert response.status_code == 503
    assert json.loads(response.content) == {
        "error": {"code": "checkpoint_sink_failed", "message": "The checkpoint URL answered HTTP 500."}}


# --- the actor an entry names ------------------------------------------------------------------


def test_an_entry_without_actor_names_the_system():
    entry = audit_record(action=registry.GRANT_CHANGED, data={})
    stored = AuditEntry.objects.get(pk=entry.pk)
    assert (stored.actor_type, stored.actor) == ("system", "system")
    assert actor_of(None) == ("system", "system")


def test_an_entry_by_an_agent_names_the_agent_by_its_slug(make_agent):
    agent = make_agent("agent-x")
    entry = audit_record(action=registry.GRANT_CHANGED, actor=agent, data={})
    stored = AuditEntry.objects.get(pk=entry.pk)
    assert (stored.actor_type, stored.actor) == ("agent", "agent-x")


def test_an_entry_by_a_user_names_the_user_by_username(django_user_model):
    user = django_user_model.objects.create_user(username="carol", password="pw-carol")
    entry = audit_record(action=registry.GRANT_CHANGED, actor=user, data={})
    stored = AuditEntry.objects.get(pk=entry.pk)
    assert (stored.actor_type, stored.actor) == ("user", "carol")


# --- what an entry stores, and what one write costs --------------------------------------------


def test_the_entry_stores_the_data_it_was_given():
    data = {"grant": "acme/core", "limits": {"per_day": 5}, "names": ["a", "b"]}
    entry = audit_record(action=registry.GRANT_CHANGED, portal="acme", data=data)
    assert entry.data == data
    assert AuditEntry.objects.get(pk=entry.pk).data == data
    assert audit_verify().ok


def test_writing_on_an_existing_chain_takes_three_statements():
    """Lock the head, insert the entry, move the head: the chain's head row is read once (the
    `get_or_create` path is for a chain's first entry only). PostgreSQL moves the head inside the
    entries' INSERT (a data-modifying WITH): two statements (tests/services/test_audit_append_only.py)."""
    audit_record(action=registry.GRANT_CHANGED, portal="acme", data={"i": 0})
    with CaptureQueriesContext(connection) as queries:
        audit_record(action=registry.GRANT_CHANGED, portal="acme", data={"i": 1})
    statements = [q["sql"].split()[0].upper() for q in queries.captured_queries]
    expected = ["SELECT", "WITH"] if connection.vendor == "postgresql" else ["SELECT", "INSERT", "UPDATE"]
    assert statements == expected, queries.captured_queries
    assert AuditHead.objects.get(chain="portal:acme").seq == 2


def test_a_chains_first_entry_creates_its_head():
    audit_record(action=registry.GRANT_CHANGED, portal="newco", data={})
    head = AuditHead.objects.get(chain="portal:newco")
    assert head.seq == 1 and head.hash == AuditEntry.objects.get(chain="portal:newco", seq=1).hash


# --- collected writes --------------------------------------------------------------------------


def test_collected_entries_are_written_when_the_block_ends():
    with transaction.atomic():
        with audit_collected():
            audit_record(action=registry.GRANT_CHANGED, portal="acme", data={"i": 1})
            with audit_collected():  # nested: shares the outer queue
                audit_record(action=registry.GRANT_CHANGED, portal="beta", data={"i": 2})
            audit_record(action=registry.GRANT_CHANGED, portal="acme", data={"i": 3})
            assert AuditEntry.objects.count() == 0  # queued, not yet written
        assert [(e.chain, e.seq, e.data["i"]) for e in AuditEntry.objects.order_by("pk")] == [
            ("portal:acme", 1, 1), ("portal:acme", 2, 3), ("portal:beta", 1, 2)]
    # a later direct write continues the chain the collected block left
    audit_record(action=registry.GRANT_CHANGED, portal="acme", data={"i": 4})
    assert AuditHead.objects.get(chain="portal:acme").seq == 3
    assert audit_verify().ok


def test_after_a_collected_block_writes_go_straight_to_the_chain_again():
    with transaction.atomic(), audit_collected():
        audit_record(action=registry.GRANT_CHANGED, portal="acme", data={"i": 1})
    entry = audit_record(action=registry.GRANT_CHANGED, portal="acme", data={"i": 2})
    assert AuditEntry.objects.filter(pk=entry.pk, seq=2).exists()


def test_an_exception_leaving_the_block_drops_the_queue():
    with pytest.raises(ZeroDivisionError), transaction.atomic(), audit_collected():
        audit_record(action=registry.GRANT_CHANGED, portal="acme", data={})
        1 / 0  # noqa: B018
    assert AuditEntry.objects.count() == 0
    entry = audit_record(action=registry.GRANT_CHANGED, portal="acme", data={})
    assert AuditEntry.objects.filter(pk=entry.pk, seq=1).exists()


@pytest.mark.django_db(transaction=True)
def test_collecting_outside_a_transaction_is_refused():
    with pytest.raises(RuntimeError) as raised, audit_collected():
        pass
    assert str(raised.value) == "audit_collected() must run inside the transaction it audits."
    assert AuditEntry.objects.count() == 0


def test_the_entry_stores_the_id_of_the_plan_it_was_given(db):
    plan = PlanLike(pk=uuid.UUID("6f1c1b2e-0000-4000-8000-000000000001"))
    entry = audit_record(action=registry.GRANT_CHANGED, plan=plan, data={})
    assert AuditEntry.objects.get(pk=entry.pk).plan_id == plan.pk
    by_id = audit_record(action=registry.GRANT_CHANGED, plan=plan.pk, data={})
    assert AuditEntry.objects.get(pk=by_id.pk).plan_id == plan.pk
    assert audit_verify().ok


# --- the checkpoint sinks ----------------------------------------------------------------------


@pytest.fixture
def entries(db):
    audit_record(action=registry.GRANT_CHANGED, portal="acme", data={})
    audit_record(action=registry.GRANT_CHANGED, data={})


def test_the_sink_file_is_created_with_its_missing_directories_and_not_world_readable(entries, settings, tmp_path):
    path = tmp_path / "a" / "b" / "checkpoints.jsonl"
    settings.AUDIT_CHECKPOINT_PATH = str(path)
    published = audit_checkpoint()
    assert [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] == published
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 & ~umask


def test_an_unwritable_sink_file_fails_with_its_reason(entries, settings, tmp_path):
    settings.AUDIT_CHECKPOINT_PATH = str(tmp_path)  # a directory: cannot be opened for writing
    with pytest.raises(CheckpointSinkError) as raised:
        audit_checkpoint()
    assert raised.value.message == "The checkpoint file could not be written: Is a directory."
    assert AuditCheckpoint.objects.count() == 0


def test_file_and_command_sinks_both_receive_every_checkpoint(entries, settings, tmp_path, checkpoint_file):
    received = tmp_path / "received.jsonl"
    script = tmp_path / "sink.py"
    script.write_text(f"import sys\nopen({str(received)!r}, 'a').write(sys.stdin.read())\n")
    settings.AUDIT_CHECKPOINT_COMMAND = f"{sys.executable} {script}"
    published = audit_checkpoint()
    assert len(published) == 2
    assert [json.loads(line) for line in received.read_text().splitlines()] == published
    assert [json.loads(line) for line in checkpoint_file.read_text().splitlines()] == published


def test_the_command_sinks_output_is_captured_not_printed(entries, settings, capfd):
    settings.AUDIT_CHECKPOINT_PATH = ""
    settings.AUDIT_CHECKPOINT_COMMAND = (f"{sys.executable} -c \"import sys; sys.stdin.read(); print('SINK-OUT'); "
                                         f"print('SINK-ERR', file=sys.stderr)\"")
    assert len(audit_checkpoint()) == 2
    out, err = capfd.readouterr()
    assert "SINK-OUT" not in out and "SINK-ERR" not in err


def test_a_failing_command_sink_names_its_exit_status(entries, settings):
    settings.AUDIT_CHECKPOINT_PATH = ""
    settings.AUDIT_CHECKPOINT_COMMAND = f"{sys.executable} -c 'import sys; sys.exit(3)'"
    with pytest.raises(CheckpointSinkError) as raised:
        audit_checkpoint()
    assert raised.value.message == "The checkpoint command exited with status 3."
    assert AuditCheckpoint.objects.count() == 0


def test_a_command_sink_that_cannot_start_names_why(entries, settings, tmp_path):
    settings.AUDIT_CHECKPOINT_PATH = ""
    settings.AUDIT_CHECKPOINT_COMMAND = str(tmp_path / "no-such-sink")
    with pytest.raises(CheckpointSinkError) as raised:
        audit_checkpoint()
    assert raised.value.message == "The checkpoint command could not run: FileNotFoundError."
    assert AuditCheckpoint.objects.count() == 0


class Recorder(BaseHTTPRequestHandler):
    """Records each request (method, target, content type, body) and answers `status`."""

    status = 201
    seen: list

    def _answer(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append((self.command, self.path, self.headers.get("Content-Type"), body))
        self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_GET = _answer  # noqa: N815

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def http_sink(status=201):
    handler = type("Handler", (Recorder,), {"status": status, "seen": []})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield server.server_port, handler.seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("path", "target"), [("/anchor", "/anchor"), ("/anchor?x=1&y=2", "/anchor?x=1&y=2"),
                                              ("", "/"), ("?x=1", "/?x=1")])
def test_the_url_sink_posts_json_to_the_urls_path_and_query(entries, settings, path, target):
    settings.AUDIT_CHECKPOINT_PATH = ""
    with http_sink() as (port, seen):
        settings.AUDIT_CHECKPOINT_URL = f"http://127.0.0.1:{port}{path}"
        published = audit_checkpoint()
    assert [(method, at, kind) for method, at, kind, _body in seen] == [("POST", target, "application/json")] * 2
    assert [json.loads(body.decode("utf-8")) for *_, body in seen] == published


@pytest.mark.parametrize("status", [200, 204, 299])
def test_the_url_sink_accepts_every_2xx(entries, settings, status):
    settings.AUDIT_CHECKPOINT_PATH = ""
    with http_sink(status) as (port, seen):
        settings.AUDIT_CHECKPOINT_URL = f"http://127.0.0.1:{port}/anchor"
        assert len(audit_checkpoint()) == 2
    assert len(seen) == 2 and AuditCheckpoint.objects.count() == 2


@pytest.mark.parametrize("status", [300, 404])
def test_the_url_sink_refuses_anything_else(entries, settings, status):
    settings.AUDIT_CHECKPOINT_PATH = ""
    with http_sink(status) as (port, _seen), pytest.raises(CheckpointSinkError) as raised:
        settings.AUDIT_CHECKPOINT_URL = f"http://127.0.0.1:{port}/anchor"
        audit_checkpoint()
    assert raised.value.message == f"The checkpoint URL answered HTTP {status}."
    assert AuditCheckpoint.objects.count() == 0


def test_an_https_url_sink_speaks_tls(entries, settings):
    """Against a plain-HTTP listener an https URL fails in the TLS handshake: the checkpoint is
    never sent in clear to an https URL."""
    settings.AUDIT_CHECKPOINT_PATH = ""
    with http_sink() as (port, seen), pytest.raises(CheckpointSinkError) as raised:
        settings.AUDIT_CHECKPOINT_URL = f"https://127.0.0.1:{port}/anchor"
        audit_checkpoint()
    assert raised.value.message.startswith("The checkpoint URL could not be reached: ")
    assert "SSL" in raised.value.message
    assert all(method != "POST" for method, *_ in seen)  # nothing readable reached the listener
    assert AuditCheckpoint.objects.count() == 0


def test_an_unreachable_url_sink_names_the_error(entries, settings):
    settings.AUDIT_CHECKPOINT_PATH = ""
    with http_sink() as (port, _seen):
        pass  # the port is closed again: nothing listens there
    settings.AUDIT_CHECKPOINT_URL = f"http://127.0.0.1:{port}/anchor"
    with pytest.raises(CheckpointSinkError) as raised:
        audit_checkpoint()
    assert raised.value.message == "The checkpoint URL could not be reached: ConnectionRefusedError."


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/anchor", "http:///anchor", "https://", "127.0.0.1:8000/anchor"])
def test_a_url_sink_that_is_not_http_with_a_host_is_refused(entries, settings, url):
    settings.AUDIT_CHECKPOINT_PATH = ""
    settings.AUDIT_CHECKPOINT_URL = url
    with pytest.raises(CheckpointSinkError) as raised:
        audit_checkpoint()
    assert raised.value.message == "AUDIT_CHECKPOINT_URL must be an http(s) URL."


def test_no_sink_is_an_error_that_names_the_settings(entries, settings):
    settings.AUDIT_CHECKPOINT_PATH = ""
    with pytest.raises(CheckpointSinkError) as raised:
        audit_checkpoint()
    assert raised.value.message == "No checkpoint sink is configured (AUDIT_CHECKPOINT_PATH, _COMMAND or _URL)."


def test_nothing_to_publish_needs_no_sink(db, settings):
    settings.AUDIT_CHECKPOINT_PATH = ""
    assert audit_checkpoint() == []
    publish_checkpoints([])


def test_a_hung_command_sink_is_cut_after_thirty_seconds(entries, settings, monkeypatch):
    """No test waits 30 s: `subprocess.run` is replaced by one that times out at once, after
    recording the bound it was given."""
    bounds = []

    def hung(args, *, timeout, **kwargs):
        bounds.append(timeout)
        raise subprocess.TimeoutExpired(args, timeout)

    monkeypatch.setattr(subprocess, "run", hung)
    settings.AUDIT_CHECKPOINT_PATH = ""
    settings.AUDIT_CHECKPOINT_COMMAND = "anchor-checkpoint --quiet"
    with pytest.raises(CheckpointSinkError) as raised:
        audit_checkpoint()
    assert raised.value.message == "The checkpoint command could not run: TimeoutExpired."
    assert bounds == [30]
    assert AuditCheckpoint.objects.count() == 0


def test_a_hung_url_sink_is_cut_after_thirty_seconds(entries, settings, monkeypatch):
    """The connection is replaced by one whose request times out at once, after recording the
    bound it was opened with."""
    bounds = []

    class Hung:
        def __init__(self, host, port, *, timeout):
            bounds.append((host, port, timeout))

        def request(self, *args, **kwargs):
            raise TimeoutError("timed out")

        def close(self):
            pass

    monkeypatch.setattr(http.client, "HTTPConnection", Hung)
    settings.AUDIT_CHECKPOINT_PATH = ""
    settings.AUDIT_CHECKPOINT_URL = "http://anchor.example:8080/cp"
    with pytest.raises(CheckpointSinkError) as raised:
        audit_checkpoint()
    assert raised.value.message == "The checkpoint URL could not be reached: TimeoutError."
    assert bounds == [("anchor.example", 8080, 30)]


# --- publishing, keeping and reading back checkpoints (the mutants after `publish_checkpoints`) -


def test_each_sink_line_is_the_checkpoint_as_json_with_sorted_keys(entries, checkpoint_file):
    published = audit_checkpoint()
    lines = checkpoint_file.read_text(encoding="utf-8").splitlines(keepends=True)
    assert lines == [json.dumps(cp, sort_keys=True) + "\n" for cp in published]
    assert [list(json.loads(line)) for line in lines] == [["at", "chain", "hash", "kid", "seq", "sig", "type"]] * 2


def test_only_the_twenty_latest_copies_are_searched_for_a_valid_one(entries):
    """Copies that do not verify (written without the key) above the last valid one: up to
    nineteen of them, the valid copy is still found and nothing moved; twenty hide it, and the
    head is published again."""
    assert [(cp["chain"], cp["seq"]) for cp in audit_checkpoint()] == [("portal:acme", 1), ("system", 1)]
    for seq in range(2, 21):
        AuditCheckpoint.objects.create(chain="system", seq=seq, hash="0" * 64, at="x", kid="t2", sig="0" * 64)
    assert audit_checkpoint() == []
    AuditCheckpoint.objects.create(chain="system", seq=21, hash="0" * 64, at="x", kid="t2", sig="0" * 64)
    assert [(cp["chain"], cp["seq"]) for cp in audit_checkpoint()] == [("system", 1)]


def test_each_published_checkpoint_is_logged(entries, caplog):
    with caplog.at_level(logging.INFO, logger="apps.audit.services"):
        audit_checkpoint()
    assert [r.getMessage() for r in caplog.records if r.name == "apps.audit.services"] == [
        "audit checkpoint portal:acme #1 published", "audit checkpoint system #1 published"]


def signed(chain, seq, entry_hash="a" * 64, at="2026-11-25T00:00:00+00:00"):
    """A checkpoint signed under the current key, as only a holder of the key can make one."""
    checkpoint = {"type": "audit-checkpoint", "chain": chain, "seq": seq, "hash": entry_hash, "at": at, "kid": "t2"}
    checkpoint["sig"] = macs().checkpoint_signature(checkpoint)
    return checkpoint


def test_reading_checkpoints_names_each_bad_line_and_goes_on(entries, checkpoint_file):
    """Blank lines are skipped, every bad line is named by its number (from 1) and reading goes
    on past it; the database copies are read after the file and named by chain and seq."""
    acme, system = audit_checkpoint()
    forged = {**system, "seq": 50, "hash": "f" * 64}
    checkpoint_file.write_text("".join([
        json.dumps(system) + "\n",
        "\n",
        "{not json\n",
        "[1, 2]\n",
        json.dumps(forged) + "\n",
        json.dumps(signed(5, 7)) + "\n",
        json.dumps(signed("system", 1)) + "\n",
        "   \n",
        json.dumps(acme) + "\n",
    ]), encoding="utf-8")
    AuditCheckpoint.objects.create(chain="system", seq=999, hash="0" * 64, at="x", kid="t2", sig="0" * 64)
    loaded = load_checkpoints()
    assert loaded.problems == [
        "checkpoints.jsonl line 3: not JSON",
        "checkpoints.jsonl line 4: not a JSON object",
        "checkpoints.jsonl line 5: checkpoint signature is invalid (forged or altered)",
        "checkpoints.jsonl line 6: malformed checkpoint",
        "checkpoints.jsonl line 7: two signed checkpoints disagree about system #1",
        "database copy of checkpoint system #999: checkpoint signature is invalid (forged or altered)",
    ]
    assert loaded.valid == [system, acme]
    assert loaded.source == str(checkpoint_file)
    assert loaded.anchors() == {"portal:acme": {1: acme}, "system": {1: system}}


def test_a_sink_file_that_cannot_be_read_is_named_with_why(db, tmp_path):
    missing = tmp_path / "nowhere.jsonl"
    assert load_checkpoints(missing).problems == [f"{missing}: cannot be read (FileNotFoundError)"]
    garbled = tmp_path / "garbled.jsonl"
    garbled.write_bytes(b"\xff\xfe{}\n")
    loaded = load_checkpoints(garbled)
    assert (loaded.problems, loaded.valid, loaded.source) == (
        [f"{garbled}: cannot be read (UnicodeDecodeError)"], [], str(garbled))


def test_without_a_sink_file_only_the_database_copies_are_read(entries, settings, checkpoint_file):
    published = audit_checkpoint()
    checkpoint_file.unlink()  # the configured file not there (yet): not a problem, nothing read
    loaded = load_checkpoints()
    assert (loaded.valid, loaded.problems, loaded.source) == (published, [], "")
    settings.AUDIT_CHECKPOINT_PATH = ""  # no file configured at all
    loaded = load_checkpoints()
    assert (loaded.valid, loaded.problems, loaded.source) == (published, [], "")


CHAIN = "portal:acme"


@pytest.fixture
def five(db):
    for i in range(5):
        audit_record(action=registry.GRANT_CHANGED, portal="acme", data={"i": i})
    return dict(AuditEntry.objects.filter(chain=CHAIN).values_list("seq", "hash"))


def broken(problem, seq, checked, *, checkpoints=0, source=""):
    """The result of verifying the one chain of `five` with one problem."""
    return VerifyResult(ok=False, checked=checked, bad_seq=seq, problem=problem, chain=CHAIN,
                        problems=(f"{CHAIN}: entry #{seq}: {problem}",), chains=1, checkpoints=checkpoints,
                        checkpoint_source=source)


def test_an_empty_log_verifies_with_nothing_checked(db):
    assert audit_verify() == VerifyResult(ok=True, checked=0)


def test_an_intact_chain_verifies_with_its_counts(five, checkpoint_file):
    assert audit_verify() == VerifyResult(ok=True, checked=5, chains=1)
    audit_checkpoint()
    assert audit_verify() == VerifyResult(ok=True, checked=5, bad_seq=None, problem="", chain="", problems=(),
                                          chains=1, checkpoints=1, checkpoint_source=str(checkpoint_file))


def test_a_missing_head_row_is_named(five):
    AuditHead.objects.filter(chain=CHAIN).delete()
    assert audit_verify() == broken("the chain's head row is missing (entries run to #5)", 6, 5)


@pytest.mark.parametrize(("deleted", "problem"), [
    ([5], "entries #5 are missing: deleted (head is #5)"),
    ([4, 5], "entries #4..#5 are missing: deleted (head is #5)"),
])
def test_deleted_last_entries_are_named_by_their_range(five, deleted, problem):
    with tampering():
        AuditEntry.objects.filter(chain=CHAIN, seq__in=deleted).delete()
    assert audit_verify() == broken(problem, deleted[0], 5 - len(deleted))


@pytest.mark.parametrize(("head_seq", "head_of"), [(5, None), (4, 4), (4, 5)])
def test_a_head_that_does_not_point_at_the_last_entry_is_named(five, head_seq, head_of):
    """The head's seq or its hash (or both) not those of the last entry."""
    AuditHead.objects.filter(chain=CHAIN).update(seq=head_seq, hash=five[head_of] if head_of else "0" * 64)
    assert audit_verify() == broken(f"the head (#{head_seq}) does not point at the last entry #5", 5, 5)


@pytest.mark.parametrize(("kept", "what"), [
    (4, "entries #5 are missing: the tail was truncated and the head rewound"),
    (1, "entries #2..#5 are missing: the tail was truncated and the head rewound"),
    (0, "entries #1..#5 are missing: the chain was wiped"),
])
def test_a_tail_cut_below_a_signed_checkpoint_is_named(five, checkpoint_file, kept, what):
    (checkpoint,) = audit_checkpoint()
    with tampering():
        AuditEntry.objects.filter(chain=CHAIN, seq__gt=kept).delete()
    if kept:
        AuditHead.objects.filter(chain=CHAIN).update(seq=kept, hash=five[kept])
    else:
        AuditHead.objects.all().delete()
    AuditCheckpoint.objects.all().delete()  # the sink file remains
    assert audit_verify() == broken(f"{what} (signed checkpoint #5 of {checkpoint['at']})", kept + 1, kept,
                                    checkpoints=1, source=str(checkpoint_file))


def test_a_wiped_chain_with_its_head_reset_passes_without_checkpoints(five):
    """What the checkpoints exist for: without one, a chain wiped and its head set back to 0 looks
    like a chain never written."""
    with tampering():
        AuditEntry.objects.all().delete()
    AuditHead.objects.filter(chain=CHAIN).update(seq=0, hash="0" * 64)
    assert audit_verify() == VerifyResult(ok=True, checked=0, chains=1)


def test_a_checkpoint_problem_alone_is_the_results_problem(five, checkpoint_file):
    audit_checkpoint()
    checkpoint_file.write_text(checkpoint_file.read_text() + "{not json\n")
    assert audit_verify() == VerifyResult(
        ok=False, checked=5, bad_seq=None, problem="checkpoints.jsonl line 2: not JSON", chain="",
        problems=("checkpoints: checkpoints.jsonl line 2: not JSON",), chains=1, checkpoints=1,
        checkpoint_source=str(checkpoint_file))


# --- reading the entries for verification --------------------------------------------------------


@pytest.fixture
def varied(db):
    """Entries with and without plan, portal and actor, with nested data."""
    plan = PlanLike(pk=uuid.UUID("6f1c1b2e-0000-4000-8000-00000000abcd"))
    audit_record(action=registry.GRANT_CHANGED, portal="acme", plan=plan, data={"n": {"a": [1, "é"]}})
    audit_record(action=registry.AGENT_CREATED, data={"agent": "a"})
    audit_record(action=registry.GRANT_CHANGED, portal="acme", data={})


def test_the_orm_reader_yields_what_the_sqlite_reader_yields(varied, monkeypatch):
    """On another database (PostgreSQL) the entries are read through the ORM: the same rows, so
    the same hashes verify."""
    direct = list(_sqlite_rows())
    assert [(chain, row[0], row[6]) for chain, row in direct] == [
        ("portal:acme", 1, "6f1c1b2e-0000-4000-8000-00000000abcd"), ("portal:acme", 2, None), ("system", 1, None)]
    monkeypatch.setattr(connection, "vendor", "postgresql")
    assert list(_rows()) == direct


def test_on_sqlite_the_entries_are_read_with_one_plain_select(varied):
    with CaptureQueriesContext(connection) as queries:
        rows = list(_rows())
    assert len(rows) == 3
    assert [q["sql"] for q in queries] == [
        "SELECT chain, seq, created_at, action, actor_type, actor, portal, plan_id, data, prev_hash, hash, key_id "
        "FROM audit_auditentry ORDER BY chain, seq"]


class TextTimes:
    """A cursor of a connection without Django's converters: timestamps come back as the text
    SQLite stores (`YYYY-MM-DD HH:MM:SS.ffffff`)."""

    def __init__(self, cursor):
        self.cursor = cursor

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cursor.close()

    def execute(self, sql):
        self.cursor.execute(sql)

    def fetchmany(self, size):
        return [(row[0], row[1], str(row[2]), *row[3:]) for row in self.cursor.fetchmany(size)]


class TextConnection:
    vendor = "sqlite"

    def cursor(self):
        return TextTimes(connection.cursor())


def test_timestamps_read_as_text_verify_too(varied, monkeypatch):
    direct = list(_sqlite_rows())
    monkeypatch.setattr(audit_services, "connection", TextConnection())
    assert list(_sqlite_rows()) == direct
    assert audit_verify() == VerifyResult(ok=True, checked=3, chains=2)


# --- the export's refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize(("opts", "error"), [
    ({"fmt": "xml"}, {"code": "invalid_request", "message": "The format is jsonl or csv.", "field": "format"}),
    ({"chain": "portal:nope"},
     {"code": "not_found", "message": "There is no audit chain 'portal:nope'.", "field": "chain"}),
    ({"start": 0}, {"code": "invalid_request", "message": "The range starts at entry 1 or later.", "field": "from"}),
    ({"start": 3, "stop": 2},
     {"code": "invalid_request", "message": "The range ends between #3 and the head #5.", "field": "to"}),
    ({"stop": 6}, {"code": "invalid_request", "message": "The range ends between #1 and the head #5.", "field": "to"}),
])
def test_each_export_refusal_is_exact(five, opts, error):
    args = {"chain": CHAIN, "start": 1, "stop": None, "fmt": "jsonl", **opts}
    with pytest.raises(ApplicationError) as raised:
        audit_export_prepare(**args)
    assert raised.value.as_dict() == error
    assert not AuditEntry.objects.filter(action=registry.AUDIT_EXPORTED).exists()


# --- the export ------------------------------------------------------------------------------------


def test_a_checkpoint_exactly_at_the_ranges_end_covers_it(five, checkpoint_file):
    (checkpoint,) = audit_checkpoint()
    plan = audit_export_prepare(chain=CHAIN, start=1, stop=5, fmt="jsonl")
    assert plan.checkpoint == checkpoint
    assert AuditCheckpoint.objects.count() == 1 and len(checkpoint_file.read_text().splitlines()) == 1


def test_the_earliest_covering_checkpoint_is_chosen_whatever_the_sink_order(five, checkpoint_file):
    (early,) = audit_checkpoint()
    audit_record(action=registry.GRANT_CHANGED, portal="acme", data={})
    (late,) = audit_checkpoint()
    first, second = checkpoint_file.read_text().splitlines()
    checkpoint_file.write_text(f"{second}\n{first}\n")  # the sink as fetched: later one first
    assert (early["seq"], late["seq"]) == (5, 6)
    assert audit_export_prepare(chain=CHAIN, start=1, stop=4, fmt="jsonl").checkpoint == early


def test_the_export_is_audited_with_its_range_format_and_checkpoint(five, django_user_model):
    user = django_user_model.objects.create_user(username="dora", password="pw-dora")
    audit_export_prepare(chain=CHAIN, start=2, stop=3, fmt="csv", actor=user)
    exported = AuditEntry.objects.get(action=registry.AUDIT_EXPORTED)
    assert (exported.chain, exported.actor_type, exported.actor) == ("system", "user", "dora")
    assert exported.data == {"chain": CHAIN, "from": 2, "to": 3, "format": "csv", "checkpoint": 5}


EXPORTED_AT = datetime.datetime(2026, 11, 25, 5, 0, tzinfo=datetime.UTC)


def test_a_jsonl_export_is_one_sorted_utf8_json_record_a_line(db, monkeypatch):
    audit_record(action=registry.GRANT_CHANGED, portal="acme", data={"text": "é ü"})
    audit_record(action=registry.GRANT_CHANGED, portal="acme", data={})
    plan = audit_export_prepare(chain=CHAIN, start=1, stop=1, fmt="jsonl")
    monkeypatch.setattr(audit_services.timezone, "now", lambda: EXPORTED_AT)
    lines = list(audit_export_lines(plan))
    records = [json.loads(line) for line in lines]
    assert lines == [json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records]
    assert '"data": {"text": "é ü"}' in lines[1]
    assert records[0] == {"record": "header", "type": "audit-export", "v": 1, "chain": CHAIN, "from": 1, "to": 1,
                          "through": 2, "exported_at": "2026-11-25T05:00:00+00:00"}
    assert [r["record"] for r in records] == ["header", "entry", "entry", "checkpoint"]
    assert records[-1] == {"record": "checkpoint", "checkpoint": plan.checkpoint}


def test_a_csv_export_holds_the_plan_id_and_the_header_and_checkpoint_as_sorted_json(db, monkeypatch):
    plan_id = uuid.UUID("6f1c1b2e-0000-4000-8000-00000000abcd")
    audit_record(action=registry.GRANT_CHANGED, portal="acme", plan=PlanLike(pk=plan_id), data={"b": 1, "a": 2})
    audit_record(action=registry.GRANT_CHANGED, portal="acme", data={})
    plan = audit_export_prepare(chain=CHAIN, start=1, stop=2, fmt="csv")
    monkeypatch.setattr(audit_services.timezone, "now", lambda: EXPORTED_AT)
    rows = list(csv.DictReader(io.StringIO("".join(audit_export_lines(plan)))))
    header = {"type": "audit-export", "v": 1, "chain": CHAIN, "from": 1, "to": 2, "through": 2,
              "exported_at": "2026-11-25T05:00:00+00:00"}
    assert [(r["record"], r["chain"], r["data"]) for r in (rows[0], rows[-1])] == [
        ("header", CHAIN, json.dumps(header, sort_keys=True)),
        ("checkpoint", CHAIN, json.dumps(plan.checkpoint, sort_keys=True))]
    assert [(r["seq"], r["plan_id"], r["data"]) for r in rows[1:-1]] == [
        ("1", str(plan_id), '{"a":2,"b":1}'), ("2", "", "{}")]


def test_a_large_csv_export_is_streamed_in_chunks_of_just_over_64_kib(db):
    for i in range(120):
        audit_record(action=registry.GRANT_CHANGED, portal="acme", data={"i": i, "pad": "x" * (900 + i % 7)})
    plan = audit_export_prepare(chain=CHAIN, start=1, stop=None, fmt="csv")
    chunks = list(audit_export_lines(plan))
    assert len(chunks) == 3
    for chunk in chunks[:-1]:
        before_last_row = chunk[:chunk.rstrip("\n").rindex("\n") + 1]
        assert len(before_last_row) <= 64 * 1024 < len(chunk)
    rows = list(csv.DictReader(io.StringIO("".join(chunks))))
    assert [r["record"] for r in rows] == ["header"] + ["entry"] * 120 + ["checkpoint"]
    assert [json.loads(r["data"])["i"] for r in rows[1:-1]] == list(range(120))


def test_a_verification_result_and_an_export_plan_cannot_be_altered(five):
    """Both are handed to commands and views: what was verified or checked is what they show."""
    result = audit_verify()
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.ok = False
    plan = audit_export_prepare(chain=CHAIN, start=1, stop=2, fmt="jsonl")
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.stop = 5


def test_where_the_database_can_lock_rows_the_head_is_read_for_update(db, monkeypatch):
    """SQLite (this suite) has no `SELECT ... FOR UPDATE`; PostgreSQL does, and the head must be
    read with it or two writers could fork a chain. The statement is recorded, not run."""
    sent = []

    def fetchone(statement, params):
        sent.append((statement, params))
        return (3, "a" * 64)

    monkeypatch.setattr(connection.features, "has_select_for_update", True)
    monkeypatch.setattr(audit_services.sql, "fetchone", fetchone)
    assert _locked_head("system") == (3, "a" * 64)
    assert sent == [("SELECT seq, hash FROM audit_audithead WHERE chain = %s FOR UPDATE", ["system"])]
