"""Settings of the server that schemathesis fuzzes (tests/contract/run_schemathesis.py): the
production settings, with the long-poll cap lowered so that no generated `?wait=` holds a request
for long (the OpenAPI document publishes the cap, so the generated values follow it)."""

from controlplane.settings import *  # noqa: F403

API_MAX_WAIT_SECONDS = 1
