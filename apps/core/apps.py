from django.apps import AppConfig
from django.core.signals import request_finished


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"

    def ready(self):
        from .aio import forget_after_wait

        request_finished.connect(forget_after_wait, dispatch_uid="apps.core.aio.forget_after_wait")
