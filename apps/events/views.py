"""`POST /hooks/bitrix24/events` (app events, portal found by `auth[member_id]`) and
`POST /hooks/bitrix24/events/<slug>` (a portal's outgoing webhooks): thin adapters over
`services.inbound_receive`.

The body is refused with 413 before it is read or parsed when it is over `EVENTS_MAX_BODY_BYTES`
(1 MiB), with 400 when it has more than `EVENTS_MAX_FIELDS` (1,000) fields. The answer is sent as
soon as the event is stored; processing runs in a Celery task on commit.
"""

from django.conf import settings

from apps.core.api import json_endpoint, read_body
from apps.core.exceptions import NotFound, UnsupportedMediaType

from . import services
from .parsing import form_pairs, parse_delivery, parse_pairs

FORM = "application/x-www-form-urlencoded"


def _receive(request, slug=None):
    if (request.content_type or "").lower() != FORM:
        raise UnsupportedMediaType(f"Bitrix24 posts {FORM}.", field="Content-Type")
    pairs = form_pairs(read_body(request, limit=settings.EVENTS_MAX_BODY_BYTES), max_fields=settings.EVENTS_MAX_FIELDS)
    delivery = parse_delivery(parse_pairs(pairs))
    received = services.inbound_receive(
        delivery=delivery, flat_form=lambda: dict(pairs), slug=slug, app_client_id=request.GET.get("app"))
    return {"status": "stored" if received.created else "duplicate", "event": received.event}


@json_endpoint("POST")
def inbound(request):
    return _receive(request)


@json_endpoint("POST")
def inbound_for_portal(request, slug):
    return _receive(request, slug=slug)


@json_endpoint("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
def hook_not_found(request, rest):
    raise NotFound("No such hook.")
