class ReadOnlyAdminMixin:
    """Shown, never added, edited or deleted through admin forms (house rule 10)."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
