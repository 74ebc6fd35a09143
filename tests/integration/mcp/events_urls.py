"""The plane's URLs plus a stand-in event feed, for the MCP read_events tool (the real feed is
built elsewhere; the tool calls whatever view serves GET /api/v1/events)."""

from django.urls import path

from apps.agents.auth import authenticate_agent
from apps.core.api import json_endpoint
from apps.core.exceptions import InvalidRequest
from controlplane.urls import urlpatterns as plane_urlpatterns


@json_endpoint("GET")
def events(request):
    agent = authenticate_agent(request)
    after = request.GET.get("after")
    if after == "bad":
        raise InvalidRequest("after is not a cursor this API gave out.", field="after")
    return {"agent": agent.slug, "after": after, "wait": request.GET.get("wait"),
            "events": [{"event": "ONCRMLEADADD", "data": {"FIELDS": {"ID": 7}}}], "next_cursor": "c2"}


urlpatterns = [path("api/v1/events", events), *plane_urlpatterns]
