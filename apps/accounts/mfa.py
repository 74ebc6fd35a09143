"""The second-factor rule for deciding plans in a browser (allauth MFA): one home, used by the
approval pages and the admin's decision views."""

from allauth.account.authentication import get_authentication_records
from allauth.mfa.utils import is_mfa_enabled
from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect
from django.urls import reverse


def session_has_mfa(request) -> bool:
    return any(record.get("method") == "mfa" for record in get_authentication_records(request, request.user))


def mfa_gate(request, back: str):
    """None when this session may decide plans; otherwise the redirect that gets the approver a
    second factor first (set one up, or confirm the one they have), then back to `back`."""
    if not settings.APPROVER_MFA_REQUIRED or session_has_mfa(request):
        return None
    if not is_mfa_enabled(request.user):
        messages.warning(request, "Deciding plans needs a second factor. Set up an authenticator app, "
                                  "then come back to decide.")
        return redirect(f"{reverse('mfa_activate_totp')}?next={back}")
    messages.warning(request, "Confirm with your second factor before deciding.")
    return redirect(f"{reverse('mfa_reauthenticate')}?next={back}")
