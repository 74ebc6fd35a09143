"""Export a range (command and admin) with its checkpoint, and verify it with the standalone
verifier, run as a copied script in an isolated interpreter (no Django, no database)."""

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

import apps.audit.offline_verify as offline_verify
from apps.audit import registry
from apps.audit.models import AuditCheckpoint, AuditEntry
from apps.audit.services import audit_checkpoint, audit_record

pytestmark = pytest.mark.django_db

CHAIN = "portal:acme"
KEYS = "t2:YXVkaXQta2V5LWZvci10ZXN0cy1vbmx5LTAwMDAwMDA=\nt1:b2xkLWF1ZGl0LWtleS1mb3ItdGVzdHMtMDAwMDAwMDA=\n"


@pytest.fixture
def entries(db):
    for i in range(8):
        audit_record(action=registry.GRANT_CHANGED, portal="acme", data={"i": i, "text": "é ü"})
    audit_record(action=registry.AGENT_CREATED, data={"agent": "a"})


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "audit-keys.txt"
    path.write_text(KEYS)
    return path


@pytest.fixture
def verifier(tmp_path, key_file):
    """The auditor's copy of the script, run with `python -I` from a directory outside the repo."""
    script = tmp_path / "auditor" / "offline_verify.py"
    script.parent.mkdir()
    shutil.copy(offline_verify.__file__, script)

    def run(export: Path, keys: Path = key_file):
        done = subprocess.run([sys.executable, "-I", str(script), str(export), "--key-file", str(keys)],
                              capture_output=True, text=True, cwd=script.parent, timeout=60)
        return done.returncode, done.stdout + done.stderr

    return run


def export(tmp_path, fmt="jsonl", **opts) -> Path:
    out = tmp_path / f"export.{fmt}"
    call_command("audit_export", chain=opts.pop("chain", CHAIN), format=fmt, out=str(out), **opts)
    return out


def jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_export_of_a_range_verifies_offline(entries, tmp_path, verifier):
    audit_checkpoint()
    out = export(tmp_path, start=3, stop=5)
    records = jsonl(out)
    assert records[0]["record"] == "header" and (records[0]["from"], records[0]["to"]) == (3, 5)
    # entries run from #3 on to the checkpoint's entry (#8), then the checkpoint itself
    assert [r["seq"] for r in records if r["record"] == "entry"] == [3, 4, 5, 6, 7, 8]
    assert records[-1]["record"] == "checkpoint" and records[-1]["checkpoint"]["seq"] == 8
    code, output = verifier(out)
    assert code == 0, output
    assert "OK chain portal:acme: entries #3..#5 verified" in output
    # The export is itself audited, on the system chain.
    assert AuditEntry.objects.filter(chain="system", action=registry.AUDIT_EXPORTED).count() == 1


def test_earliest_covering_checkpoint_is_used(entries, tmp_path, verifier):
    audit_checkpoint()  # acme #8
    for i in range(3):
        audit_record(action=registry.GRANT_CHANGED, portal="acme", data={"later": i})
    audit_checkpoint()  # acme #11
    out = export(tmp_path, start=1, stop=9)
    assert jsonl(out)[-1]["checkpoint"]["seq"] == 11
    out = export(tmp_path, start=1, stop=2)
    assert jsonl(out)[-1]["checkpoint"]["seq"] == 8
    assert verifier(out)[0] == 0


def test_export_publishes_a_checkpoint_when_none_covers_the_range(entries, tmp_path, checkpoint_file, verifier):
    out = export(tmp_path, start=1)
    assert jsonl(out)[-1]["checkpoint"]["seq"] == 8
    assert json.loads(checkpoint_file.read_text().splitlines()[0])["seq"] == 8
    assert AuditCheckpoint.objects.filter(chain=CHAIN, seq=8).exists()
    assert verifier(out)[0] == 0


def test_csv_export_verifies_and_a_tampered_cell_is_named(entries, tmp_path, verifier):
    out = export(tmp_path, fmt="csv", start=2, stop=4)
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["record"] for r in rows][:2] == ["header", "entry"] and rows[-1]["record"] == "checkpoint"
    assert verifier(out)[0] == 0
    text = out.read_text().replace('"i"":3', '"i"":33', 1)
    assert text != out.read_text()
    out.write_text(text)
    code, output = verifier(out)
    assert code == 1 and "portal:acme: entry #4: content does not match" in output


@pytest.mark.parametrize("tamper, expected", [
    ("edit", "entry #4: content does not match its keyed hash"),
    ("drop", "entry #4: entries #4 are missing"),
    ("cut_tail", "entries #7..#8 are missing: the export stops before its checkpoint"),
    ("forge_checkpoint", "checkpoint signature is invalid"),
    ("no_checkpoint", "carries no checkpoint"),
    ("swap", "entry #4: does not link"),
    ("shrink_checkpoint", "does not cover the range's end"),
    ("malformed", "malformed record"),
])
def test_tampered_export_is_detected(entries, tmp_path, verifier, tamper, expected):
    out = export(tmp_path, start=2, stop=6)
    records = jsonl(out)
    entry = {r["seq"]: r for r in records if r["record"] == "entry"}
    if tamper == "edit":
        entry[4]["data"]["i"] = 99
    elif tamper == "drop":
        records.remove(entry[4])
    elif tamper == "cut_tail":
        records = [r for r in records if r.get("seq") not in (7, 8)]
    elif tamper == "forge_checkpoint":
        records[-1]["checkpoint"]["seq"] = 20
    elif tamper == "no_checkpoint":
        records.pop()
    elif tamper == "swap":
        i, j = records.index(entry[4]), records.index(entry[5])
        records[i], records[j] = records[j], records[i]
        entry[4]["seq"], entry[5]["seq"] = 5, 4
    elif tamper == "shrink_checkpoint":
        records[0]["to"] = 9
    elif tamper == "malformed":
        del entry[4]["prev_hash"]
    write_jsonl(out, records)
    code, output = verifier(out)
    assert code == 1, output
    assert expected in output


def test_wrong_key_fails_and_unreadable_input_exits_2(entries, tmp_path, verifier):
    out = export(tmp_path, start=1, stop=2)
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("t2:d3Jvbmcta2V5LTAwMDAwMDAwMDAwMDAwMDAwMDAwMDA=")
    code, output = verifier(out, wrong)
    assert code == 1 and "TAMPERED" in output
    assert verifier(tmp_path / "missing.jsonl")[0] == 2
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("{not json\n")
    assert verifier(garbage)[0] == 2


def test_module_form_runs_too(entries, tmp_path, key_file):
    out = export(tmp_path, start=1, stop=8)
    done = subprocess.run([sys.executable, "-m", "apps.audit.offline_verify", str(out), "--key-file", str(key_file)],
                          capture_output=True, text=True, cwd=Path(offline_verify.__file__).parents[2], timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("opts, message", [
    ({"chain": "portal:nope"}, "no audit chain"),
    ({"start": 0}, "starts at entry 1"),
    ({"start": 5, "stop": 4}, "ends between"),
    ({"start": 1, "stop": 99}, "ends between #1 and the head #8"),
])
def test_bad_ranges_are_one_line_errors(entries, tmp_path, opts, message):
    with pytest.raises(CommandError, match=message):
        export(tmp_path, **opts)


def test_command_lists_chains_and_writes_stdout(entries, capsys):
    call_command("audit_export")
    assert capsys.readouterr().out.split() == ["portal:acme", "system"]
    call_command("audit_export", chain="system")
    lines = capsys.readouterr().out.splitlines()
    assert json.loads(lines[0])["chain"] == "system" and json.loads(lines[-1])["record"] == "checkpoint"


# --- the admin -----------------------------------------------------------------------------------


def test_admin_export_page_streams_a_verifiable_file(entries, admin_client, tmp_path, verifier):
    url = reverse("admin:audit_auditentry_export")
    page = admin_client.get(url)
    assert page.status_code == 200 and b"portal:acme" in page.content
    assert url.encode() in admin_client.get(reverse("admin:audit_auditentry_changelist")).content
    response = admin_client.post(url, {"chain": CHAIN, "start": 2, "stop": 3, "format": "csv"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert 'filename="audit-portal-acme-2-3.csv"' in response["Content-Disposition"]
    out = tmp_path / "admin.csv"
    out.write_bytes(b"".join(response.streaming_content))
    assert verifier(out)[0] == 0
    exported = AuditEntry.objects.get(action=registry.AUDIT_EXPORTED)
    assert exported.actor == "admin" and exported.data["to"] == 3


def test_admin_export_page_shows_range_errors(entries, admin_client):
    response = admin_client.post(reverse("admin:audit_auditentry_export"),
                                 {"chain": CHAIN, "start": 1, "stop": 50, "format": "jsonl"})
    assert response.status_code == 200 and b"ends between #1 and the head #8" in response.content


def test_admin_action_exports_the_selected_range(entries, admin_client, tmp_path, verifier):
    ids = list(AuditEntry.objects.filter(chain=CHAIN, seq__in=[3, 6]).values_list("pk", flat=True))
    response = admin_client.post(reverse("admin:audit_auditentry_changelist"),
                                 {"action": "export_jsonl", "_selected_action": ids})
    assert response.status_code == 200
    out = tmp_path / "action.jsonl"
    out.write_bytes(b"".join(response.streaming_content))
    header = jsonl(out)[0]
    assert (header["from"], header["to"]) == (3, 6)
    assert verifier(out)[0] == 0


def test_admin_action_refuses_a_selection_across_chains(entries, admin_client):
    ids = [AuditEntry.objects.get(chain=CHAIN, seq=1).pk, AuditEntry.objects.get(chain="system", seq=1).pk]
    response = admin_client.post(reverse("admin:audit_auditentry_changelist"),
                                 {"action": "export_jsonl", "_selected_action": ids}, follow=True)
    assert b"Select entries of one chain" in response.content
    assert not AuditEntry.objects.filter(action=registry.AUDIT_EXPORTED).exists()


def test_export_page_needs_view_permission(entries, client, django_user_model):
    user = django_user_model.objects.create_user(username="staff", password="pw-staff", is_staff=True)
    client.force_login(user)
    assert client.get(reverse("admin:audit_auditentry_export")).status_code == 403
