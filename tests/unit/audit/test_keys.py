"""AUDIT_KEYS: parsed strictly, derived from SECRET_KEY only in DEBUG, required outside it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from apps.audit import keys
from apps.audit.offline_verify import KeyError_, parse_keys

ROOT = Path(__file__).resolve().parents[3]


def settings_value(**env):
    environ = {k: v for k, v in os.environ.items() if k not in ("AUDIT_KEYS", "DEBUG")}
    environ.update(env)
    code = "import controlplane.settings as s; print(','.join(s.AUDIT_KEYS))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, cwd=ROOT,
                          timeout=60)


def test_debug_derives_a_key_from_secret_key():
    done = settings_value(DEBUG="1", SECRET_KEY="one")
    assert done.returncode == 0, done.stderr
    parsed = parse_keys([done.stdout.strip()])
    assert list(parsed) == ["dev"] and len(parsed["dev"]) == 32
    other = settings_value(DEBUG="1", SECRET_KEY="two").stdout.strip()
    assert other and other != done.stdout.strip()


def test_outside_debug_the_keys_are_required():
    done = settings_value(DEBUG="0", SECRET_KEY="x", FIELD_ENCRYPTION_KEYS="a")
    assert done.returncode != 0 and "AUDIT_KEYS" in done.stderr


@pytest.mark.parametrize("items, message", [
    ([], "no audit key"),
    (["nokid"], "kid:base64key"),
    (["bad kid!:YWJjZGVmZ2hpamtsbW5vcHFyc3Q="], "kid:base64key"),
    (["k:c2hvcnQ="], "shorter than 16 bytes"),
    (["k:YWJjZGVmZ2hpamtsbW5vcHFyc3Q=", "k:YWJjZGVmZ2hpamtsbW5vcHFyc3Q="], "twice"),
])
def test_malformed_keys_are_refused(items, message):
    with pytest.raises(KeyError_, match=message):
        parse_keys(items)


def test_a_malformed_setting_is_a_configuration_error(settings):
    settings.AUDIT_KEYS = ["k:c2hvcnQ="]
    with pytest.raises(ImproperlyConfigured, match="AUDIT_KEYS"):
        keys.signing_kid()


def test_the_first_key_signs_and_all_verify(settings):
    settings.AUDIT_KEYS = ["b:YmJiYmJiYmJiYmJiYmJiYmJiYmI=", "a:YWFhYWFhYWFhYWFhYWFhYWFhYWE="]
    assert keys.signing_kid() == "b" and "a" in keys.macs() and "b" in keys.macs()


def test_system_check_reports_a_malformed_setting(settings):
    from apps.audit.checks import audit_keys_check

    assert audit_keys_check() == []
    settings.AUDIT_KEYS = ["oops"]
    errors = audit_keys_check()
    assert [e.id for e in errors] == ["audit.E001"] and "kid:base64key" in errors[0].msg


def test_standard_and_urlsafe_base64_are_both_accepted():
    import base64

    raw = b"\xfb\xff\xfe" * 11
    parsed = parse_keys([f"s:{base64.b64encode(raw).decode()}", f"u:{base64.urlsafe_b64encode(raw).decode()}"])
    assert parsed == {"s": raw, "u": raw}
