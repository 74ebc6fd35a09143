from django.apps import AppConfig


class BitrixConfig(AppConfig):
    name = "apps.bitrix"
    label = "bitrix"

    def ready(self):
        from .redact import install_urllib3_filter

        # Webhook codes travel in URL paths: mask them in every logger that prints request lines.
        install_urllib3_filter()
