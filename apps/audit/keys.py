"""The audit keys, from the `AUDIT_KEYS` setting (never from the database): `kid:base64key`
items, the first signs new entries and checkpoints, all of them verify (rotation)."""

from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .offline_verify import KeyError_, Macs, parse_keys


@lru_cache(maxsize=4)
def _parsed(items: tuple[str, ...]) -> tuple[str, Macs]:
    try:
        keys = parse_keys(items)
    except KeyError_ as exc:
        raise ImproperlyConfigured(f"AUDIT_KEYS: {exc}") from None
    return next(iter(keys)), Macs(keys)


def signing_kid() -> str:
    return _parsed(tuple(settings.AUDIT_KEYS))[0]


def macs() -> Macs:
    return _parsed(tuple(settings.AUDIT_KEYS))[1]
