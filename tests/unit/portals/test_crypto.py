"""apps.portals.crypto: the first key encrypts, every key decrypts, rotate moves to the first key."""

import pytest
from cryptography.fernet import Fernet

from apps.portals import crypto

NEW, OLD = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def test_second_key_decrypts_and_rotate_moves_to_the_first(settings):
    settings.FIELD_ENCRYPTION_KEYS = [OLD]
    token = crypto.encrypt("s3cret-value")
    settings.FIELD_ENCRYPTION_KEYS = [NEW, OLD]
    assert crypto.decrypt(token) == "s3cret-value"  # the second key still decrypts
    assert not crypto.is_current(token)
    rotated = crypto.rotate(token)
    assert crypto.is_current(rotated)
    settings.FIELD_ENCRYPTION_KEYS = [NEW]
    assert crypto.decrypt(rotated) == "s3cret-value"
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(token)


def test_new_values_are_encrypted_under_the_first_key(settings):
    settings.FIELD_ENCRYPTION_KEYS = [NEW, OLD]
    token = crypto.encrypt("x")
    assert crypto.is_current(token)
    settings.FIELD_ENCRYPTION_KEYS = [NEW]
    assert crypto.decrypt(token) == "x"


def test_rotate_refuses_what_no_key_opens(settings):
    settings.FIELD_ENCRYPTION_KEYS = [NEW]
    foreign = Fernet(Fernet.generate_key()).encrypt(b"x").decode()
    assert not crypto.is_current(foreign) and not crypto.is_current("not a token")
    with pytest.raises(crypto.DecryptionError):
        crypto.rotate(foreign)
