"""apps.portals.crypto's small helpers and the messages an operator reads when keys are wrong."""

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from apps.portals import crypto


def test_generate_key_makes_a_key_the_settings_accept(settings):
    key = crypto.generate_key()
    assert isinstance(key, str) and Fernet(key.encode())  # a valid Fernet key
    settings.FIELD_ENCRYPTION_KEYS = [key]
    assert crypto.decrypt(crypto.encrypt("x")) == "x"
    assert crypto.generate_key() != key


def test_mask_never_shows_the_secret_or_its_length():
    assert crypto.mask("") == "" and crypto.mask(None) == ""
    assert crypto.mask("abc") == crypto.mask("a-much-longer-secret-value") == "•" * 8


def test_wrong_keys_are_named_in_the_error(settings):
    settings.FIELD_ENCRYPTION_KEYS = []
    with pytest.raises(ImproperlyConfigured, match=r"^FIELD_ENCRYPTION_KEYS is empty\.$"):
        crypto.encrypt("x")
    settings.FIELD_ENCRYPTION_KEYS = ["not-a-key"]
    with pytest.raises(ImproperlyConfigured, match=r"^FIELD_ENCRYPTION_KEYS holds a key that is not a Fernet key: "):
        crypto.encrypt("x")


def test_an_unreadable_secret_says_which_setting_to_check(settings):
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    foreign = Fernet(Fernet.generate_key()).encrypt(b"x").decode()
    message = r"^A stored secret cannot be decrypted with FIELD_ENCRYPTION_KEYS\.$"
    with pytest.raises(crypto.DecryptionError, match=message):
        crypto.decrypt(foreign)
    with pytest.raises(crypto.DecryptionError, match=message):
        crypto.rotate(foreign)


def test_undecryptable_secrets_are_named_by_place_never_by_content():
    where = [f"portals.Credential.access_token pk={pk}" for pk in range(25)]
    error = crypto.UndecryptableSecrets(where)
    assert error.where == where
    text = str(error)
    assert text.startswith("25 stored secret(s) cannot be decrypted with any key of FIELD_ENCRYPTION_KEYS: "
                           "portals.Credential.access_token pk=0, ")
    assert "pk=19" in text and "pk=20" not in text and text.endswith(" ...")
