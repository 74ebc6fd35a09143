from django.contrib.auth.models import AbstractUser


class User(AbstractUser):
    """Custom user model from the first commit (cookiecutter-django). Approvers and grant
    admins are users; agents are not (see apps.agents)."""

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"
