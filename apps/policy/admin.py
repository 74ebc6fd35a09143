from django import forms
from django.contrib import admin

from apps.audit import registry as audit_events
from apps.audit.services import audit_record

from .models import CustomPack, PackGrant
from .normalize import normalize_method
from .packs import BUILTIN_PACKS
from .selectors import known_pack_names


class PackGrantForm(forms.ModelForm):
    class Meta:
        model = PackGrant
        fields = ("agent", "portal", "pack", "read_policy", "write_policy", "destructive_policy", "expires_at")

    def clean_pack(self):
        pack = self.cleaned_data["pack"].strip()
        if pack not in known_pack_names():
            raise forms.ValidationError(
                f"Unknown pack. Built-in: {', '.join(sorted(BUILTIN_PACKS))}; or the name of a custom pack.")
        return pack


@admin.register(PackGrant)
class PackGrantAdmin(admin.ModelAdmin):
    form = PackGrantForm
    list_display = ("agent", "portal", "pack", "read_policy", "write_policy", "destructive_policy", "expires_at")
    list_filter = ("pack", "portal", "agent")

    def save_model(self, request, obj, form, change):
        obj.created_by = obj.created_by or request.user
        super().save_model(request, obj, form, change)
        audit_record(action=audit_events.GRANT_CHANGED, actor=request.user, portal=obj.portal, data={
            "via": "admin", "agent": obj.agent.slug, "pack": obj.pack, "read": obj.read_policy,
            "write": obj.write_policy, "destructive": obj.destructive_policy,
            "expires_at": obj.expires_at.isoformat() if obj.expires_at else None})

    def delete_model(self, request, obj):
        audit_record(action=audit_events.GRANT_REMOVED, actor=request.user, portal=obj.portal,
                     data={"via": "admin", "agent": obj.agent.slug, "pack": obj.pack})
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)


class CustomPackForm(forms.ModelForm):
    class Meta:
        model = CustomPack
        fields = ("name", "description", "patterns")

    def clean_name(self):
        name = self.cleaned_data["name"]
        if name in BUILTIN_PACKS:
            raise forms.ValidationError("That is a built-in pack's name.")
        return name

    def clean_patterns(self):
        lines = [line.strip() for line in self.cleaned_data["patterns"].splitlines() if line.strip()]
        if not lines:
            raise forms.ValidationError("Give at least one method pattern.")
        cleaned = []
        for line in lines:
            if line in ("*", "*.*") or line.startswith("*"):
                raise forms.ValidationError(f"{line!r} is too broad: start a pattern with a method prefix.")
            try:
                normalize_method(line.replace("*", "x"))
            except Exception:  # noqa: BLE001 - any refusal is a form error
                raise forms.ValidationError(f"{line!r} is not a method name or pattern (letters, digits, . _ *).")
            cleaned.append(line.lower())
        return "\n".join(cleaned)


@admin.register(CustomPack)
class CustomPackAdmin(admin.ModelAdmin):
    form = CustomPackForm
    list_display = ("name", "description")
