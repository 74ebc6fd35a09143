from django.apps import AppConfig


class BitrixConfig(AppConfig):
    name = "apps.bitrix"
    label = "bitrix"

    def ready(self):
        from .redact import install_redact_filters

        # Webhook codes travel in URL paths: mask them in every logger that prints request lines.
        install_redact_filters()
