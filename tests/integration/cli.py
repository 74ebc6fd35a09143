"""Run a management command the way a shell would, for the per-app command tests."""

from io import StringIO

from django.core.management import call_command


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()
