"""The web process's applications: requests to the agent API and the event hook go through a
shorter middleware stack than the pages people use.

Those paths authenticate with a bearer token or a signed form and answer JSON: sessions, the
logged-in user, messages, CSRF cookies and allauth's account state are never read there, yet
each of those middlewares costs every request its hooks (under ASGI, a thread hop per hook).
`API_MIDDLEWARE` (settings) is their stack; `API_PATH_PREFIXES` the paths it serves. The URL
configuration, error handlers, signals and database handling are Django's, shared by both.
"""

from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler

from . import aio


def _with_middleware(handler_class, middleware: list[str], name: str):
    class Handler(handler_class):
        def load_middleware(self, is_async=False):
            # BaseHandler.load_middleware reads settings.MIDDLEWARE; swapped only while this
            # handler is built, once, when the process starts.
            full = settings.MIDDLEWARE
            settings.MIDDLEWARE = list(middleware)
            try:
                super().load_middleware(is_async=is_async)
            finally:
                settings.MIDDLEWARE = full

    Handler.__name__ = Handler.__qualname__ = name
    return Handler


class _SharedThreadsApiHandler(ASGIHandler):
    """Each API request runs its thread-sensitive calls (Django's request signals, a sync view)
    on one of a few shared threads (`apps.core.aio.shared_request_thread`) instead of a thread
    started for it and another started to join that one when it ends."""

    async def handle(self, scope, receive, send):
        aio.use_shared_request_thread()  # inside the request's ThreadSensitiveContext (ASGIHandler.__call__)
        return await super().handle(scope, receive, send)


class ASGIRouter:
    """HTTP requests under `API_PATH_PREFIXES` to the API handler, everything else to `pages`."""

    def __init__(self, pages):
        self.pages = pages
        self.api = _with_middleware(_SharedThreadsApiHandler, settings.API_MIDDLEWARE, "ApiASGIHandler")()
        self.prefixes = tuple(settings.API_PATH_PREFIXES)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope.get("path", "").startswith(self.prefixes):
            return await self.api(scope, receive, send)
        return await self.pages(scope, receive, send)


class _BlockingApiHandler(WSGIHandler):
    """Runs a view's `blocking` twin (`apps.core.aio.long_poll`) where it has one: a sync worker
    thread then serves a long-poll view without an event loop and a thread of its own per
    request, and enters a loop only while it waits."""

    def resolve_request(self, request):
        match = super().resolve_request(request)
        blocking = getattr(match.func, "blocking", None)
        if blocking is not None:
            match.func = blocking
        return match


class WSGIRouter:
    """The same split for the WSGI application (gunicorn's sync workers)."""

    def __init__(self, pages):
        self.pages = pages
        self.api = _with_middleware(_BlockingApiHandler, settings.API_MIDDLEWARE, "ApiWSGIHandler")()
        self.prefixes = tuple(settings.API_PATH_PREFIXES)

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO", "").startswith(self.prefixes):
            return self.api(environ, start_response)
        return self.pages(environ, start_response)
