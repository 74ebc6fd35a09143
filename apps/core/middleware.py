import re
import uuid

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.middleware import clickjacking as _clickjacking
from django.middleware import common as _common
from django.middleware import security as _security

from .logging import request_id_var

_VALID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdMiddleware:
    """Gives every request an id (the caller's `X-Request-Id` when sane), echoes it back and
    makes it available to log lines. Sync and async: under ASGI it runs on the event loop, so a
    waiting async view holds no thread (a sync-only middleware would hold one per request)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def _start(self, request):
        incoming = request.headers.get("X-Request-Id", "")
        request.request_id = incoming if _VALID.match(incoming) else uuid.uuid4().hex
        return request_id_var.set(request.request_id)

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        token = self._start(request)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-Id"] = request.request_id
        return response

    async def __acall__(self, request):
        token = self._start(request)
        try:
            response = await self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-Id"] = request.request_id
        return response


def inline_hooks(middleware_class):
    """`middleware_class` (a Django `MiddlewareMixin` whose hooks only compute: no database, no
    network, no file) made async-native. Django runs each sync hook of such a middleware through
    `sync_to_async` under ASGI, a thread hop per hook per request; these run on the event loop."""

    class Inline(middleware_class):
        async def __acall__(self, request):
            response = self.process_request(request) if hasattr(self, "process_request") else None
            response = response or await self.get_response(request)
            if hasattr(self, "process_response"):
                response = self.process_response(request, response)
            return response

    Inline.__name__ = Inline.__qualname__ = middleware_class.__name__
    Inline.__module__ = __name__
    Inline.__doc__ = f"{middleware_class.__module__}.{middleware_class.__name__}, its hooks run inline."
    return Inline


SecurityMiddleware = inline_hooks(_security.SecurityMiddleware)
CommonMiddleware = inline_hooks(_common.CommonMiddleware)
XFrameOptionsMiddleware = inline_hooks(_clickjacking.XFrameOptionsMiddleware)
