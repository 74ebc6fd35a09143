"""Masking of credentials in anything that may be logged or shown: webhook codes in REST paths,
`auth=` tokens and OAuth query parameters. Used for redirect locations, and as a logging filter
on the loggers that print request lines: urllib3 (path and query, at DEBUG) and Django's
runserver/request loggers (the sandbox portal served by the same process)."""

import logging
import re

MASK = "***"

_WEBHOOK_PATH = re.compile(r"(/rest/(?:api/)?\d+/)[^/\s\"'?#]+")
_QUERY_SECRET = re.compile(
    r"((?:^|[?&;\s])(?:auth|access_token|refresh_token|client_secret|code|application_token|"
    r"AUTH_ID|REFRESH_ID)=)[^&\s\"'#]*",
    re.IGNORECASE,
)


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """`text` with webhook codes, tokens and the given secret values replaced by ***."""
    if not text:
        return text
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    text = _WEBHOOK_PATH.sub(lambda m: m.group(1) + MASK, text)
    return _QUERY_SECRET.sub(lambda m: m.group(1) + MASK, text)


class RedactFilter(logging.Filter):
    """Rewrites a record's message with `redact` before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record must still not leak
            message = str(record.msg)
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


LOGGERS = ("urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry", "requests", "django.server",
           "django.request")


def install_redact_filters() -> None:
    """A RedactFilter on each of LOGGERS (once, however often this is called)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactFilter) for f in logger.filters):
            logger.addFilter(RedactFilter())
