"""Checkpoints: signed, published outside the database (file, command, URL), by the command and
by the periodic task registered in the beat schedule."""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.audit import registry, tasks
from apps.audit.keys import macs
from apps.audit.models import AuditCheckpoint, AuditHead
from apps.audit.services import CheckpointSinkError, audit_checkpoint, audit_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def entries(db):
    for portal in ("acme", "beta", None):
        audit_record(action=registry.GRANT_CHANGED, portal=portal, data={"p": portal})
    audit_record(action=registry.GRANT_CHANGED, portal="acme", data={})


def read_sink(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_command_publishes_a_signed_checkpoint_per_chain_head(entries, checkpoint_file, capsys):
    call_command("audit_checkpoint")
    lines = read_sink(checkpoint_file)
    heads = dict(AuditHead.objects.values_list("chain", "hash"))
    assert {(cp["chain"], cp["seq"]) for cp in lines} == {("portal:acme", 2), ("portal:beta", 1), ("system", 1)}
    for cp in lines:
        assert cp["type"] == "audit-checkpoint" and cp["kid"] == "t2" and cp["hash"] == heads[cp["chain"]]
        assert macs().checkpoint_problem(cp) == ""
        assert set(cp) == {"type", "chain", "seq", "hash", "at", "kid", "sig"}
    assert AuditCheckpoint.objects.count() == 3
    assert "3 checkpoint(s) published" in capsys.readouterr().out


def test_signature_covers_every_field(entries):
    cp = audit_checkpoint()[0]
    for field, value in [("seq", cp["seq"] + 1), ("hash", "0" * 64), ("chain", "system"), ("at", "2020-01-01"),
                         ("kid", "t1")]:
        assert macs().checkpoint_problem({**cp, field: value}), field


def test_only_moved_heads_are_published_again(entries, checkpoint_file):
    audit_checkpoint()
    assert audit_checkpoint() == []
    audit_record(action=registry.GRANT_CHANGED, portal="beta", data={})
    again = audit_checkpoint()
    assert [(cp["chain"], cp["seq"]) for cp in again] == [("portal:beta", 2)]
    assert len(read_sink(checkpoint_file)) == 4
    assert len(audit_checkpoint(force=True)) == 3


def test_a_forged_database_copy_does_not_suppress_publishing(entries):
    audit_checkpoint()
    AuditCheckpoint.objects.create(chain="portal:acme", seq=999, hash="0" * 64, at="x", kid="t2", sig="0" * 64)
    audit_record(action=registry.GRANT_CHANGED, portal="acme", data={})
    assert [(cp["chain"], cp["seq"]) for cp in audit_checkpoint()] == [("portal:acme", 3)]


def test_sink_file_is_appended_never_rewritten(entries, checkpoint_file):
    audit_checkpoint()
    first = checkpoint_file.read_text()
    audit_record(action=registry.GRANT_CHANGED, portal="acme", data={})
    audit_checkpoint()
    assert checkpoint_file.read_text().startswith(first)


def test_command_sink_receives_the_json_on_stdin(entries, settings, tmp_path):
    received = tmp_path / "received.jsonl"
    script = tmp_path / "sink.py"
    script.write_text(f"import sys\nopen({str(received)!r}, 'a').write(sys.stdin.read())\n")
    settings.AUDIT_CHECKPOINT_PATH = ""
    settings.AUDIT_CHECKPOINT_COMMAND = f"{sys.executable} {script}"
    published = audit_checkpoint()
    assert read_sink(received) == published and len(published) == 3


def test_failing_command_sink_fails_loudly_and_keeps_no_copy(entries, settings):
    settings.AUDIT_CHECKPOINT_PATH = ""
    settings.AUDIT_CHECKPOINT_COMMAND = f"{sys.executable} -c 'import sys; sys.exit(3)'"
    with pytest.raises(CommandError, match="status 3"):
        call_command("audit_checkpoint")
    assert AuditCheckpoint.objects.count() == 0  # not recorded: the next run publishes again


def test_url_sink_receives_a_post(entries, settings):
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(201)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings.AUDIT_CHECKPOINT_PATH = ""
        settings.AUDIT_CHECKPOINT_URL = f"http://127.0.0.1:{server.server_port}/anchor"
        published = audit_checkpoint()
    finally:
        server.shutdown()
        server.server_close()
    assert received == published and len(received) == 3


def test_unreachable_url_sink_raises(entries, settings):
    settings.AUDIT_CHECKPOINT_PATH = ""
    settings.AUDIT_CHECKPOINT_URL = "http://127.0.0.1:9/anchor"
    with pytest.raises(CheckpointSinkError):
        audit_checkpoint()
    assert AuditCheckpoint.objects.count() == 0


@pytest.mark.parametrize("status", [500, 302])
def test_url_sink_that_does_not_accept_raises(entries, settings, status):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        settings.AUDIT_CHECKPOINT_PATH = ""
        settings.AUDIT_CHECKPOINT_URL = f"http://127.0.0.1:{server.server_port}/anchor?x=1"
        with pytest.raises(CheckpointSinkError, match=f"HTTP {status}"):
            audit_checkpoint()
    finally:
        server.shutdown()
        server.server_close()
    assert AuditCheckpoint.objects.count() == 0


def test_non_http_url_sink_is_refused(entries, settings):
    settings.AUDIT_CHECKPOINT_PATH = ""
    settings.AUDIT_CHECKPOINT_URL = "file:///etc/passwd"
    with pytest.raises(CheckpointSinkError, match="http"):
        audit_checkpoint()


def test_no_sink_configured_is_an_error(entries, settings):
    settings.AUDIT_CHECKPOINT_PATH = ""
    with pytest.raises(CheckpointSinkError, match="No checkpoint sink"):
        audit_checkpoint()


def test_periodic_task_publishes_and_is_in_the_beat_schedule(entries, checkpoint_file):
    entry = django_settings.CELERY_BEAT_SCHEDULE["audit-checkpoint"]
    assert entry["task"] == tasks.audit_checkpoint.name == "apps.audit.tasks.audit_checkpoint"
    assert tasks.audit_checkpoint.apply().get() == 3
    assert len(read_sink(checkpoint_file)) == 3
