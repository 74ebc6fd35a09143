from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from apps.agents.models import Agent
from apps.core.exceptions import ApplicationError
from apps.mcp.skill import skill_export


class Command(BaseCommand):
    help = ("Write AGENT's skill folder (SKILL.md, references/ per granted pack, scripts/ with the "
            "standard-library client) to DIR; copy it to ~/.openclaw/skills/ or ~/.moltbot/skills/ to install. "
            "The folder holds no token: the agent reads B24CP_TOKEN from its environment.")

    def add_arguments(self, parser):
        parser.add_argument("agent", help="the agent's slug")
        parser.add_argument("--out", required=True, help="the skill folder to write, e.g. skills/bitrix24-sales")
        parser.add_argument("--name", help="the skill's name (default: the folder's name)")
        parser.add_argument("--url", default="", help="the plane's public URL, built into the script")
        parser.add_argument("--force", action="store_true", help="replace an earlier export in DIR")

    def handle(self, *args, **opts):
        agent = Agent.objects.filter(slug=opts["agent"], is_active=True).first()
        if agent is None:
            raise CommandError(f"No active agent {opts['agent']!r}.")
        try:
            summary = skill_export(agent=agent, out=Path(opts["out"]), name=opts["name"], plane_url=opts["url"],
                                   force=opts["force"])
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"Wrote skill {summary['name']} for {agent.slug} ({', '.join(summary['packs'])}) "
                          f"to {opts['out']}: {len(summary['files'])} files.")
        self.stdout.write(f"Install: cp -R {opts['out']} ~/.openclaw/skills/  (or ~/.moltbot/skills/), "
                          "then set B24CP_TOKEN in the agent's environment.")
