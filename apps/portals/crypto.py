"""The only module that sees encryption keys.

Secrets (webhook codes, OAuth tokens, client secrets, application tokens) are stored as Fernet
tokens. `FIELD_ENCRYPTION_KEYS` is a list: the first key encrypts, every key decrypts, so keys
rotate by prepending a new one and running `manage.py rotate_secrets`.
"""

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


class DecryptionError(Exception):
    pass


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS is empty.")
    try:
        return MultiFernet([Fernet(k.encode() if isinstance(k, str) else k) for k in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(f"FIELD_ENCRYPTION_KEYS holds a key that is not a Fernet key: {exc}") from None


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError) as exc:
        raise DecryptionError("A stored secret cannot be decrypted with FIELD_ENCRYPTION_KEYS.") from exc


def rotate(token: str) -> str:
    return fernet().rotate(token.encode("ascii")).decode("ascii")


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")


def mask(secret: str | None) -> str:
    """What may be shown of a secret anywhere: never more than a hint of its length."""
    if not secret:
        return ""
    return "•" * 8


class EncryptedTextField(models.TextField):
    """Stores Fernet ciphertext; Python code sees plaintext. Empty stays empty (no ciphertext
    for 'not set'). The column never holds plaintext."""

    description = "Text encrypted at rest with FIELD_ENCRYPTION_KEYS"

    def from_db_value(self, value, expression, connection):
        if value in (None, ""):
            return value
        return decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value in (None, ""):
            return value
        return encrypt(value)
