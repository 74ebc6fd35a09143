from django.urls import path

from . import api

urlpatterns = [
    path("exports", api.exports, name="api-exports"),
    path("exports/<str:export_id>", api.export_detail, name="api-export-detail"),
    path("exports/<str:export_id>/cancel", api.export_cancel, name="api-export-cancel"),
    path("exports/<str:export_id>/file", api.export_file, name="api-export-file"),
]
