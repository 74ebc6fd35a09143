from django.urls import path

from . import api, views

hook_urlpatterns = [
    path("events", views.inbound, name="events-inbound"),
    path("events/<slug:slug>", views.inbound_for_portal, name="events-inbound-portal"),
    path("<path:rest>", views.hook_not_found),  # a JSON 404, never Django's HTML page
]

api_urlpatterns = [
    path("events", api.events_feed, name="api-events"),
    path("events/subscriptions", api.subscriptions, name="api-event-subscriptions"),
]
