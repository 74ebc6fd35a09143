"""The only module that sees encryption keys.

Secrets (webhook codes, OAuth tokens, client secrets, application tokens) are stored as Fernet
tokens in `EncryptedTextField` columns. `FIELD_ENCRYPTION_KEYS` is a list: the first key
encrypts, every key decrypts. To rotate, put a new key first, keep the old ones after it, run
`manage.py rotate_keys` (`secrets_rotate`: every stored secret is re-encrypted under the first
key), then drop the old keys.
"""

from dataclasses import dataclass, field
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models, transaction


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


@lru_cache(maxsize=4)
def _first(key: str) -> Fernet:
    return Fernet(key.encode() if isinstance(key, str) else key)


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError) as exc:
        raise DecryptionError("A stored secret cannot be decrypted with FIELD_ENCRYPTION_KEYS.") from exc


_decrypted: dict[tuple[tuple[str, ...], str], str] = {}
_DECRYPTED_MAX = 1024


def decrypt_cached(token: str) -> str:
    """`decrypt` for a hot path (the event hook checks a portal's application_token on every
    delivery): the plaintext is kept in this process, keyed by the keys and the exact ciphertext.
    Fernet ciphertexts are never reused (a random IV each time), so a rotated key or a changed,
    revoked or re-encrypted secret is a different key here and is decrypted afresh at once; the
    caller still reads the ciphertext from its row on every call."""
    key = (tuple(settings.FIELD_ENCRYPTION_KEYS), token)
    plaintext = _decrypted.get(key)
    if plaintext is None:
        plaintext = decrypt(token)
        if len(_decrypted) >= _DECRYPTED_MAX:
            _decrypted.clear()
        _decrypted[key] = plaintext
    return plaintext


def rotate(token: str) -> str:
    """The token re-encrypted under the first key (DecryptionError if no key opens it)."""
    try:
        return fernet().rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError) as exc:
        raise DecryptionError("A stored secret cannot be decrypted with FIELD_ENCRYPTION_KEYS.") from exc


def is_current(token: str) -> bool:
    """True if the first key alone decrypts the token (rotation has nothing to do)."""
    fernet()  # validates the keys
    try:
        _first(settings.FIELD_ENCRYPTION_KEYS[0]).decrypt(token.encode("ascii"))
    except (InvalidToken, UnicodeError):
        return False
    return True


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


# --- key rotation -----------------------------------------------------------------------------


@dataclass
class FieldRotation:
    model: str  # app_label.ModelName
    field: str
    rotated: int = 0
    current: int = 0


@dataclass
class RotationReport:
    fields: list[FieldRotation] = field(default_factory=list)

    @property
    def rotated(self) -> int:
        return sum(f.rotated for f in self.fields)

    @property
    def current(self) -> int:
        return sum(f.current for f in self.fields)


class UndecryptableSecrets(DecryptionError):
    """Stored values no key of FIELD_ENCRYPTION_KEYS opens. `where` names them by model, field
    and primary key, never by content."""

    def __init__(self, where: list[str]):
        self.where = where
        super().__init__(
            f"{len(where)} stored secret(s) cannot be decrypted with any key of FIELD_ENCRYPTION_KEYS: "
            + ", ".join(where[:20]) + (" ..." if len(where) > 20 else "")
        )


def encrypted_fields() -> list[tuple[type[models.Model], list[str]]]:
    """Every concrete model with EncryptedTextField columns, and those columns' names."""
    found = []
    for model in apps.get_models():
        names = [
            f.name for f in model._meta.concrete_fields
            if isinstance(f, EncryptedTextField) and f.model is model
        ]
        if names:
            found.append((model, names))
    return sorted(found, key=lambda item: item[0]._meta.label)


def secrets_rotate(*, acting_user=None) -> RotationReport:
    """Re-encrypt every stored secret under the first key of FIELD_ENCRYPTION_KEYS, in one
    transaction with its audit entry. Values already under the first key are left alone, so a
    second run changes nothing. Rows are locked while they are rewritten, so a token refreshed at
    the same time is not overwritten with its predecessor. If any value cannot be decrypted,
    UndecryptableSecrets is raised and nothing is changed."""
    from apps.audit import registry as audit_events
    from apps.audit.services import audit_record

    report = RotationReport()
    undecryptable: list[str] = []
    with transaction.atomic():
        for model, names in encrypted_fields():
            counts = {name: FieldRotation(model=model._meta.label, field=name) for name in names}
            raw = {f"_raw_{name}": models.ExpressionWrapper(models.F(name), output_field=models.TextField())
                   for name in names}
            rows = model._base_manager.select_for_update().order_by("pk").annotate(**raw).values("pk", *raw)
            for row in rows:
                changes = {}
                for name in names:
                    token = row[f"_raw_{name}"]
                    if not token:
                        continue
                    if is_current(token):
                        counts[name].current += 1
                        continue
                    try:
                        changes[name] = models.Value(rotate(token), output_field=models.TextField())
                    except DecryptionError:
                        undecryptable.append(f"{model._meta.label}.{name} pk={row['pk']}")
                        continue
                    counts[name].rotated += 1
                if changes and not undecryptable:
                    model._base_manager.filter(pk=row["pk"]).update(**changes)
            report.fields.extend(counts.values())
        if undecryptable:
            raise UndecryptableSecrets(undecryptable)
        if report.rotated:
            audit_record(action=audit_events.SECRETS_ROTATED, actor=acting_user, data={
                "rotated": report.rotated,
                "current": report.current,
                "fields": [
                    {"model": f.model, "field": f.field, "rotated": f.rotated, "current": f.current}
                    for f in report.fields
                ],
            })
    return report
