"""Portals in the admin: an adapter over apps.portals.services. The form validates with the same
checks the service uses; saving calls `portal_upsert` once (portal, credential, approvers), so
the admin writes exactly what the `add_portal` command writes, with the same audit entries."""

from django import forms
from django.contrib import admin

from apps.core.exceptions import InvalidRequest

from .models import Credential, OAuthApp, Portal
from .services import (
    CREDENTIAL_FIELDS,
    oauth_app_upsert,
    oauth_apps_delete,
    portal_upsert,
    portals_delete,
    validate_base_url,
    validate_limits,
    validate_slug,
)


class SecretField(forms.CharField):
    """Write-only: never rendered back; left blank, the stored value stays."""

    def __init__(self, **kwargs):
        super().__init__(required=False, strip=True,
                         widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
                         help_text="Write-only. Leave blank to keep the stored value.", **kwargs)


def _check(check, value):
    """Run a service check; its refusal becomes the field's form error."""
    try:
        return check(value)
    except InvalidRequest as exc:
        raise forms.ValidationError(exc.message) from None


class CredentialForm(forms.ModelForm):
    webhook_code = SecretField()
    client_secret = SecretField()
    access_token = SecretField()
    refresh_token = SecretField()
    application_token = SecretField()

    class Meta:
        model = Credential
        fields = ("webhook_user_id", "webhook_code", "oauth_app", "client_id", "client_secret", "oauth_server_url",
                  "access_token", "refresh_token", "access_expires_at", "client_endpoint", "application_token")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in Credential.SECRET_FIELDS:
            self.initial[name] = ""

    def clean_webhook_user_id(self):
        value = (self.cleaned_data.get("webhook_user_id") or "").strip()
        if value and not value.isdigit():
            raise forms.ValidationError("The numeric user id from the webhook URL (/rest/<user id>/<code>/).")
        return value

    def _post_clean(self):
        # Blank secrets mean "keep": do not let the model validation see them as cleared.
        for name in Credential.SECRET_FIELDS:
            if not self.cleaned_data.get(name):
                self.cleaned_data.pop(name, None)
        super()._post_clean()


class CredentialInline(admin.StackedInline):
    model = Credential
    form = CredentialForm
    can_delete = False
    readonly_fields = ("status", "status_detail", "secrets_set")

    @admin.display(description="secrets stored")
    def secrets_set(self, obj):
        return ", ".join(name for name in Credential.SECRET_FIELDS if getattr(obj, name)) or "none"


class PortalForm(forms.ModelForm):
    class Meta:
        model = Portal
        fields = ("slug", "name", "base_url", "auth_mode", "member_id", "rate_per_second", "burst", "is_active",
                  "approvers")

    def clean_slug(self):
        return _check(validate_slug, self.cleaned_data["slug"])

    def clean_base_url(self):
        return _check(validate_base_url, self.cleaned_data["base_url"])

    def clean(self):
        cleaned = super().clean()
        try:
            validate_limits(rate_per_second=cleaned.get("rate_per_second"), burst=cleaned.get("burst"))
        except InvalidRequest as exc:
            self.add_error({"rps": "rate_per_second"}.get(exc.extra.get("field"), "burst"), exc.message)
        return cleaned


@admin.register(Portal)
class PortalAdmin(admin.ModelAdmin):
    form = PortalForm
    list_display = ("slug", "name", "base_url", "auth_mode", "rate_per_second", "burst", "is_active")
    list_filter = ("auth_mode", "is_active")
    search_fields = ("slug", "name", "member_id")
    filter_horizontal = ("approvers",)
    inlines = [CredentialInline]

    def get_readonly_fields(self, request, obj=None):
        # Agents name a portal by its slug: renaming it would silently break them.
        return ("slug",) if obj is not None else ()

    def save_model(self, request, obj, form, change):
        """Nothing here: the portal, its credential and its approvers are written together by one
        service call in `save_related`, where the credential inline's data is available."""

    def save_related(self, request, form, formsets, change):
        data = form.cleaned_data
        secrets, fields = {}, {}
        for formset in formsets:
            for inline in formset.forms:
                cleaned = getattr(inline, "cleaned_data", None) or {}
                secrets.update({k: cleaned[k] for k in Credential.SECRET_FIELDS if cleaned.get(k)})
                fields.update({k: cleaned[k] for k in CREDENTIAL_FIELDS if k in cleaned})
            # what construct_change_message reads from a saved formset
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        portal, _ = portal_upsert(
            slug=form.instance.slug, base_url=data["base_url"], auth_mode=data["auth_mode"], name=data.get("name", ""),
            rate_per_second=data.get("rate_per_second"), burst=data.get("burst"), member_id=data.get("member_id", ""),
            is_active=data.get("is_active"), secrets=secrets, fields=fields, approvers=data.get("approvers", []),
            acting_user=request.user,
        )
        form.instance.pk = portal.pk

    # Django's delete page has already refused a portal with plans (they protect it).
    def delete_model(self, request, obj):
        portals_delete(portals=[obj], acting_user=request.user)

    def delete_queryset(self, request, queryset):
        portals_delete(portals=queryset, acting_user=request.user)


class OAuthAppForm(forms.ModelForm):
    client_secret = SecretField()

    class Meta:
        model = OAuthApp
        fields = ("name", "client_id", "client_secret", "scopes", "token_url")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial["client_secret"] = ""


@admin.register(OAuthApp)
class OAuthAppAdmin(admin.ModelAdmin):
    form = OAuthAppForm
    list_display = ("name", "client_id", "token_url")

    def get_readonly_fields(self, request, obj=None):
        # Installed portals' credentials point at the app; its client id is its identity.
        return ("client_id",) if obj is not None else ()

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        app, _ = oauth_app_upsert(client_id=obj.client_id, name=data["name"], client_secret=data.get("client_secret"),
                                  scopes=data.get("scopes", ""), token_url=data["token_url"], acting_user=request.user)
        obj.pk = app.pk

    # Django's delete page has already refused an app that credentials use (they protect it).
    def delete_model(self, request, obj):
        oauth_apps_delete(apps=[obj], acting_user=request.user)

    def delete_queryset(self, request, queryset):
        oauth_apps_delete(apps=queryset, acting_user=request.user)
