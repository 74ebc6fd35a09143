from django.urls import path

from . import api

urlpatterns = [
    path("plans", api.plans, name="api-plans"),
    path("plans/<str:plan_id>", api.plan_detail, name="api-plan-detail"),
    path("plans/<str:plan_id>/cancel", api.plan_cancel, name="api-plan-cancel"),
    path("capabilities", api.capabilities, name="api-capabilities"),
    path("methods/<path:name>", api.method_detail, name="api-method-detail"),
    path("openapi.json", api.openapi, name="api-openapi"),
]
