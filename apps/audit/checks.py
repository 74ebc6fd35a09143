"""System check: a malformed AUDIT_KEYS is reported by every management command and at start,
as one line, instead of a traceback at the first audit entry."""

from django.conf import settings
from django.core import checks

from .offline_verify import KeyError_, parse_keys


@checks.register(checks.Tags.security)
def audit_keys_check(app_configs=None, **kwargs):
    try:
        parse_keys(settings.AUDIT_KEYS)
    except KeyError_ as exc:
        return [checks.Error(f"AUDIT_KEYS: {exc}", hint="kid:base64key items, the first signs, all verify",
                             id="audit.E001")]
    return []
