from django.urls import path

from . import views

app_name = "approvals"

urlpatterns = [
    path("", views.inbox, name="inbox"),
    path("state", views.inbox_state, name="inbox_state"),
    path("bulk", views.bulk, name="bulk"),
    path("plans/<str:plan_id>/", views.plan_page, name="plan"),
    path("plans/<str:plan_id>/state", views.plan_state, name="plan_state"),
    path("plans/<str:plan_id>/decide", views.decide, name="decide"),
    path("plans/<str:plan_id>/revert", views.revert, name="revert"),
]
