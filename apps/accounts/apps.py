from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "apps.accounts"
    label = "accounts"
    verbose_name = "Users"  # allauth's own app is "Accounts" (email addresses): two sidebar sections of one name
