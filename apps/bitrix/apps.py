from django.apps import AppConfig


class BitrixConfig(AppConfig):
    name = "apps.bitrix"
    label = "bitrix"
