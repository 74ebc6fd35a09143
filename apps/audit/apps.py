from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "apps.audit"
    label = "audit"

    def ready(self):
        from . import checks  # noqa: F401 - registers the AUDIT_KEYS check
