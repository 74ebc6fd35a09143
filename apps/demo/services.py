"""What only the demo needs: its two local accounts and the Approvers group. Everything else the
demo sets up goes through the owning app's services."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import transaction

APPROVER_PERMISSIONS = ("approve_plan", "view_plan", "view_pendingplan", "view_approval")


def demo_accounts_ensure(*, admin_password: str, reviewer_password: str):
    """`admin` (superuser) and `reviewer` (staff, in the Approvers group), with these passwords.
    Returns (admin, reviewer)."""
    User = get_user_model()
    with transaction.atomic():
        approvers, _ = Group.objects.get_or_create(name="Approvers")
        approvers.permissions.add(*Permission.objects.filter(
            content_type__app_label="plans", codename__in=APPROVER_PERMISSIONS))
        admin, _ = User.objects.get_or_create(username="admin", defaults={"email": "admin@example.com"})
        admin.is_staff = admin.is_superuser = True
        admin.set_password(admin_password)
        admin.save()
        reviewer, _ = User.objects.get_or_create(username="reviewer", defaults={"email": "reviewer@example.com"})
        reviewer.is_staff = True
        reviewer.set_password(reviewer_password)
        reviewer.save()
        reviewer.groups.add(approvers)
    return admin, reviewer
