from django import forms
from django.contrib import admin

from apps.audit import registry as audit_events
from apps.audit.services import audit_record
from apps.core.exceptions import InvalidRequest

from .models import Credential, OAuthApp, Portal
from .services import validate_base_url


class SecretField(forms.CharField):
    """Write-only: never rendered back; left blank, the stored value stays."""

    def __init__(self, **kwargs):
        super().__init__(required=False, strip=True,
                         widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
                         help_text="Write-only. Leave blank to keep the stored value.", **kwargs)


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

    def clean(self):
        cleaned = super().clean()
        for name in Credential.SECRET_FIELDS:
            if not cleaned.get(name) and self.instance.pk:
                cleaned[name] = getattr(Credential.objects.get(pk=self.instance.pk), name)
        return cleaned


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

    def clean_base_url(self):
        try:
            return validate_base_url(self.cleaned_data["base_url"])
        except InvalidRequest as exc:
            raise forms.ValidationError(exc.message) from None


@admin.register(Portal)
class PortalAdmin(admin.ModelAdmin):
    form = PortalForm
    list_display = ("slug", "name", "base_url", "auth_mode", "rate_per_second", "burst", "is_active")
    list_filter = ("auth_mode", "is_active")
    search_fields = ("slug", "name", "member_id")
    filter_horizontal = ("approvers",)
    inlines = [CredentialInline]

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        changed = set(form.changed_data)
        for formset in formsets:
            for f in formset.forms:
                changed |= {f"credential.{name}" for name in f.changed_data}
        # Names of what changed only: secret values never reach the audit log.
        audit_record(action=audit_events.PORTAL_CHANGED, actor=request.user, portal=form.instance,
                     data={"via": "admin", "changed": sorted(changed)})


class OAuthAppForm(forms.ModelForm):
    client_secret = SecretField()

    class Meta:
        model = OAuthApp
        fields = ("name", "client_id", "client_secret", "scopes", "token_url")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial["client_secret"] = ""

    def clean_client_secret(self):
        value = self.cleaned_data.get("client_secret")
        if not value and self.instance.pk:
            return OAuthApp.objects.get(pk=self.instance.pk).client_secret
        return value


@admin.register(OAuthApp)
class OAuthAppAdmin(admin.ModelAdmin):
    form = OAuthAppForm
    list_display = ("name", "client_id", "token_url")
