"""Work a web process does once at start instead of in its first requests.

Publishing a Celery task resolves the broker's transport on first use, which imports kombu's
transport module and its client library (the Redis client, hundreds of milliseconds on a busy
machine): without this, the first event or plan each web worker receives pays for it, which shows
as a latency spike per worker. The URL configuration (every app's urls and views) is likewise
imported and resolved here, not in the first request. Nothing here touches the network.
"""

from __future__ import annotations

import gc
import logging

logger = logging.getLogger(__name__)


def warm_web_process() -> None:
    try:
        from controlplane.celery import app

        app.connection_for_write().transport  # noqa: B018  (imports the transport's module)
        from django.urls import get_resolver

        from apps.events import services as _events  # noqa: F401  (the hook's imports)
        from apps.plans import services as _plans  # noqa: F401

        get_resolver().resolve("/api/v1/plans")  # imports the URL configuration and its views
    except Exception:  # noqa: BLE001 - warming up must never stop a server from starting
        logger.warning("warm-up of the web process failed; the first requests will pay for it", exc_info=True)
    # What start-up made (modules, settings, URL patterns: most of the process's objects) lives as
    # long as the process: out of the collector's reach, a full collection scans only what the
    # requests made, and a process holding hundreds of long polls does not pause for the rest.
    gc.collect()
    gc.freeze()
