from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The demo (`seed_demo`): the only app that may import from every other one, since it sets
    them all up; nothing imports it."""

    name = "apps.demo"
    label = "demo"
