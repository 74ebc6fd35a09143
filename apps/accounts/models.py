from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """Custom user model from the first commit (cookiecutter-django). Approvers and grant
    admins are users; agents are not (see apps.agents)."""

    time_zone = models.CharField(
        max_length=64, blank=True,
        help_text="IANA zone for times on the approval pages (e.g. Europe/Berlin); blank: the browser's zone.")

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"
