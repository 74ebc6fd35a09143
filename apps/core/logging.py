import contextvars
import logging

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


class RequestIdFilter(logging.Filter):
    def filter(self, record):
        record.request_id = request_id_var.get()
        return True


class RedactArgsFilter(logging.Filter):
    """Masks credentials in a record's message and in each of its string arguments, keeping the
    arguments' shape (uvicorn's access formatter unpacks them: client, method, path, version,
    status)."""

    def filter(self, record):
        from apps.bitrix.redact import redact

        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True
