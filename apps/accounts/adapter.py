from allauth.account.adapter import DefaultAccountAdapter


class AccountAdapter(DefaultAccountAdapter):
    """Approvers are created by admins (or `createsuperuser`); nobody signs themselves up."""

    def is_open_for_signup(self, request):
        return False
