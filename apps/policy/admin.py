from django import forms
from django.contrib import admin

from .models import CustomPack, PackGrant
from .normalize import normalize_method
from .packs import BUILTIN_PACKS
from .selectors import known_pack_names
from .services import grant_upsert, grants_remove


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

    def get_readonly_fields(self, request, obj=None):
        # Agent, portal and pack are the grant's identity: change them by removing and adding.
        return ("agent", "portal", "pack") if obj is not None else ()

    def save_model(self, request, obj, form, change):
        grant = grant_upsert(agent=obj.agent, portal=obj.portal, pack=obj.pack, read=obj.read_policy,
                             write=obj.write_policy, destructive=obj.destructive_policy, expires_at=obj.expires_at,
                             acting_user=request.user)
        obj.pk = grant.pk

    def delete_model(self, request, obj):
        grants_remove(grants=[obj], acting_user=request.user)

    def delete_queryset(self, request, queryset):
        grants_remove(grants=queryset.select_related("agent", "portal"), acting_user=request.user)


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
