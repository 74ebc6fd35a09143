"""The ASGI application: what `make run` and production serve, with uvicorn.

    .venv/bin/uvicorn controlplane.asgi:application --host 127.0.0.1 --port 8000

Long polls (`?wait=` on plans and on the event feed) are async views that hold no thread while
they wait (`apps.core.aio`, `apps.core.wakeup`); everything else is Django's sync views, each
request in a thread of its own.

- In DEBUG, static files (the admin's CSS, the approval pages' assets) are served from the apps'
  static folders, as `runserver` did (Django's `ASGIStaticFilesHandler`). Outside DEBUG run
  `collectstatic` and let the proxy in front serve `STATIC_ROOT` at `STATIC_URL`.
- A request's sync code runs in a thread that ends with the request, so a database connection
  kept for the next request would be left behind: on PostgreSQL the web process borrows from
  psycopg's connection pool (unless `DATABASE_POOL=0`; sizes `DATABASE_POOL_MIN`/`_MAX`), elsewhere it
  opens one per request (`CONN_MAX_AGE=0` here, whatever `.env` says for workers).
- uvicorn's access lines carry paths and query strings (the sandbox portal's webhook paths,
  OAuth `code=`): they are masked like Django's own request lines.
"""

import logging
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
os.environ["CONN_MAX_AGE"] = "0"
os.environ["CONTROLPLANE_ASGI"] = "1"  # settings: the web process pools PostgreSQL connections

from django.conf import settings  # noqa: E402 - after the environment above
from django.core.asgi import get_asgi_application  # noqa: E402

from apps.core.handlers import ASGIRouter  # noqa: E402 - after the settings

application = ASGIRouter(get_asgi_application())

from apps.core.warmup import warm_web_process  # noqa: E402 - needs the apps loaded

warm_web_process()

if settings.DEBUG:
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    application = ASGIStaticFilesHandler(application)

from apps.core.logging import RedactArgsFilter  # noqa: E402 - needs the apps loaded

for _name in ("uvicorn.access", "uvicorn.error"):
    _logger = logging.getLogger(_name)
    if not any(isinstance(f, RedactArgsFilter) for f in _logger.filters):
        _logger.addFilter(RedactArgsFilter())
