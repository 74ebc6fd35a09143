from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.template.response import TemplateResponse

from apps.core.exceptions import ApplicationError

from .models import Agent
from .services import agent_create, agent_revoke, agent_rotate_callback_secret, agent_rotate_token, agent_update


class AgentCreateForm(forms.Form):
    slug = forms.SlugField(max_length=64)
    name = forms.CharField(max_length=200, required=False)
    owner = forms.ModelChoiceField(queryset=get_user_model().objects.all(), required=False,
                                   help_text="The person responsible; they cannot approve this agent's plans.")


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "owner", "token_prefix", "is_active", "last_used_at", "revoked_at")
    list_filter = ("is_active",)
    search_fields = ("slug", "name")
    fields = ("slug", "name", "owner", "token_prefix", "is_active", "revoked_at", "last_used_at")
    readonly_fields = ("slug", "token_prefix", "is_active", "revoked_at", "last_used_at")
    actions = ["revoke_selected", "rotate_token", "rotate_callback_secret"]

    def has_delete_permission(self, request, obj=None):
        # An agent is revoked, not deleted: its plans and audit entries keep pointing at it.
        return False

    def save_model(self, request, obj, form, change):
        """The change form writes through the service, which audits an owner change."""
        agent_update(agent=obj, name=form.cleaned_data.get("name", obj.name),
                     owner=form.cleaned_data.get("owner", obj.owner), acting_user=request.user)

    def add_view(self, request, form_url="", extra_context=None):
        """Creation goes through the service; the token is shown on this one page, once."""
        if not self.has_add_permission(request):
            raise PermissionError
        form = AgentCreateForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                agent, token = agent_create(acting_user=request.user, **form.cleaned_data)
            except ApplicationError as exc:
                form.add_error("slug", exc.message)
            else:
                return self._token_page(request, agent, token, callback_secret=agent.callback_secret)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form,
                   "title": "Add agent"}
        return TemplateResponse(request, "admin/agents/agent/add.html", context)

    def _token_page(self, request, agent, token, callback_secret=""):
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "agent": agent,
                   "token": token, "callback_secret": callback_secret, "title": f"Secrets of {agent.slug}"}
        response = TemplateResponse(request, "admin/agents/agent/token.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected agents' tokens")
    def revoke_selected(self, request, queryset):
        for agent in queryset:
            agent_revoke(agent=agent, acting_user=request.user)
        self.message_user(request, f"Revoked {queryset.count()} agent(s).", messages.SUCCESS)

    @admin.action(description="Give the selected agent a new token (shown once)")
    def rotate_token(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one agent.", messages.ERROR)
            return None
        agent = queryset.get()
        return self._token_page(request, agent, agent_rotate_token(agent=agent, acting_user=request.user))

    @admin.action(description="Give the selected agent a new callback secret (shown once)")
    def rotate_callback_secret(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one agent.", messages.ERROR)
            return None
        agent = queryset.get()
        secret = agent_rotate_callback_secret(agent=agent, acting_user=request.user)
        return self._token_page(request, agent, "", callback_secret=secret)
