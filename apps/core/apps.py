from django.apps import AppConfig
from django.core.signals import request_finished


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"

    def ready(self):
        from .aio import forget_shared_thread

        request_finished.connect(forget_shared_thread, dispatch_uid="apps.core.aio.forget_shared_thread")
