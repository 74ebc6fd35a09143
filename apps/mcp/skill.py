"""Export an agent's skill folder in the source skill pack's layout (vrtalex/bitrix24-skill):

    <out>/SKILL.md                 front matter (name, description, version, metadata.openclaw)
    <out>/references/packs.md      the agent's portals, packs and policies
    <out>/references/catalog-<pack>.md one per granted pack: the methods it may call, risk, policy
    <out>/scripts/control_plane.py the CLI (python3, standard library only)
    <out>/scripts/b24cp/           the client package it runs (a copy of clients/b24cp)

Copying the folder to ~/.openclaw/skills/ (or ~/.moltbot/skills/) is the whole install. The
folder talks to the plane only, never to Bitrix24, and holds no secret: the token is read from
B24CP_TOKEN at run time (the plane keeps only its hash, so it could not write it anyway).
"""

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from apps.core.exceptions import InvalidRequest
from apps.policy.catalog import all_methods
from apps.policy.decide import DENY, GrantView, describe_method
from apps.policy.packs import BUILTIN_PACKS, matches_any
from apps.policy.risk import RISKS, classify
from apps.policy.selectors import active_grants, custom_pack_patterns, grant_views_for, pack_patterns
from apps.portals.models import Portal
from clients import b24cp

CLIENT_DIR = Path(b24cp.__file__).resolve().parent
SKILL_TEMPLATE = Path(__file__).resolve().parent / "SKILL.md.template"
CLIENT_FILES = ("__init__.py", "__main__.py", "client.py", "cli.py", "mcp_tools.py", "mcp_stdio.py")
_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
POLICY_WORDS = {
    "auto": "runs at once",
    "approve": "waits for one approver",
    "approve2": "waits for two different approvers",
    "deny": "refused",
}


@dataclass(frozen=True)
class PortalGrants:
    portal: Portal
    grants: list  # PackGrant rows
    views: list[GrantView]


def skill_name_for(value: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-")[:64].strip("-")
    return name or "bitrix24-control-plane"


def _portal_grants(agent) -> list[PortalGrants]:
    out = []
    for portal in Portal.objects.filter(grants__agent=agent, is_active=True).distinct().order_by("slug"):
        grants = list(active_grants(agent=agent, portal=portal))
        if grants:
            out.append(PortalGrants(portal, grants, grant_views_for(agent=agent, portal=portal)))
    return out


def skill_export(*, agent, out: Path, name: str | None = None, plane_url: str = "", force: bool = False) -> dict:
    """Write the folder; returns a summary (`name`, `packs`, `files`). Raises InvalidRequest."""
    out = Path(out)
    name = name or skill_name_for(out.name)
    if not _NAME.match(name):
        raise InvalidRequest("A skill name is 1-64 lowercase letters, digits or '-'.", field="name")
    if plane_url and not re.match(r"^https?://[^\s/]+(/[^\s]*)?$", plane_url):
        raise InvalidRequest("--url must be an http(s) URL.", field="url")
    portals = _portal_grants(agent)
    if not portals:
        raise InvalidRequest(f"Agent {agent.slug} holds no active grant: grant it a pack first.", field="agent")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise InvalidRequest(f"{out} exists and is not empty (use --force to replace it).", field="out")
        if not (out / "SKILL.md").exists():
            raise InvalidRequest(f"{out} is not a skill folder; refusing to replace it.", field="out")
        shutil.rmtree(out)
    custom = custom_pack_patterns()
    packs = sorted({g.pack for pg in portals for g in pg.grants})
    files = {"SKILL.md": _skill_md(agent, name, portals, packs, plane_url),
             "references/packs.md": _packs_md(agent, portals, custom)}
    for pack in packs:
        files[f"references/catalog-{pack}.md"] = _pack_md(agent, pack, portals, custom)
    files["scripts/control_plane.py"] = _script(plane_url)
    files["scripts/mcp_server.py"] = _script(plane_url, mcp=True)
    for rel, text in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for script in ("control_plane.py", "mcp_server.py"):
        (out / "scripts" / script).chmod(0o755)
    target = out / "scripts" / "b24cp"
    target.mkdir(parents=True, exist_ok=True)
    for filename in CLIENT_FILES:
        shutil.copyfile(CLIENT_DIR / filename, target / filename)
    return {"name": name, "packs": packs, "files": sorted([*files, *(f"scripts/b24cp/{f}" for f in CLIENT_FILES)])}


# --- SKILL.md ---------------------------------------------------------------------------------

def _policy_cells(grant) -> str:
    return f"{grant.read_policy} | {grant.write_policy} | {grant.destructive_policy}"


def _skill_md(agent, name, portals, packs, plane_url) -> str:
    portal_list = ", ".join(pg.portal.slug for pg in portals)
    description = (
        f"Read and change Bitrix24 ({', '.join(packs)} packs) on portal {portal_list} through the agent "
        f"control plane as agent {agent.slug}. Use when the user asks about Bitrix24 CRM, tasks, chats or "
        "other portal data. Reads answer at once; writes may wait for a human approver."
    )
    env_lines = "        - B24CP_TOKEN\n" + ("" if plane_url else "        - B24CP_URL\n")
    rows = "\n".join(f"| {pg.portal.slug} | `{g.pack}` | {_policy_cells(g)} |" for pg in portals for g in pg.grants)
    url_line = (f"The plane is `{plane_url}` (built into the script; `B24CP_URL` overrides it)."
                if plane_url else "Set `B24CP_URL` to the plane's address, e.g. `https://plane.example.com`.")
    return SKILL_TEMPLATE.read_text(encoding="utf-8").format(
        name=name, description=description, env_lines=env_lines, agent=agent.slug, rows=rows, url_line=url_line,
        portal=portals[0].portal.slug)


# --- references -------------------------------------------------------------------------------

def _pack_description(pack: str) -> str:
    builtin = BUILTIN_PACKS.get(pack)
    return builtin.description if builtin else "Custom pack defined by the plane's admins."


def _packs_md(agent, portals, custom) -> str:
    lines = [f"# Packs granted to `{agent.slug}`", "",
             "Policies: " + "; ".join(f"**{k}** {v}" for k, v in POLICY_WORDS.items()) + ".", "",
             "| portal | pack | read | write | destructive | expires | what it covers |",
             "|---|---|---|---|---|---|---|"]
    for pg in portals:
        for g in pg.grants:
            expires = g.expires_at.date().isoformat() if g.expires_at else "never"
            lines.append(f"| {pg.portal.slug} | [`{g.pack}`](catalog-{g.pack}.md) | {_policy_cells(g)} | {expires} | "
                         f"{_pack_description(g.pack)} |")
    lines += ["", "Ask an admin for another pack when a call is refused with `not_granted`: the error names it.", ""]
    return "\n".join(lines)


def _pack_md(agent, pack, portals, custom) -> str:
    patterns = pack_patterns(pack, custom)
    holders = [pg for pg in portals if any(g.pack == pack for g in pg.grants)]
    lines = [f"# Pack `{pack}`", "", _pack_description(pack), "",
             f"Granted to `{agent.slug}` on:", "", "| portal | read | write | destructive |", "|---|---|---|---|"]
    for pg in holders:
        grant = next(g for g in pg.grants if g.pack == pack)
        lines.append(f"| {pg.portal.slug} | {_policy_cells(grant)} |")
    lines += ["", "Patterns: " + ", ".join(f"`{p}`" for p in patterns), ""]
    methods = [m for m in all_methods() if matches_any(patterns, m.normalized)]
    header = "| method | scope | risk | " + " | ".join(pg.portal.slug for pg in holders) + " |"
    rows = []
    for risk in RISKS:
        for info in methods:
            method_risk = classify(info.normalized)
            if method_risk != risk:
                continue
            policies = [describe_method(pg.views, info.normalized)["policy"] or DENY for pg in holders]
            if all(p == DENY for p in policies):
                continue
            rows.append(f"| `{info.name}` | {info.scope or '-'} | {risk} | " + " | ".join(policies) + " |")
    lines += [f"## Methods this agent may call ({len(rows)})", "",
              "The policy per portal is the effective one with all of this agent's grants there. Risk can "
              "rise with the parameters (e.g. `user.update` that deactivates a user is destructive); "
              "`describe` tells for sure.", "", header, "|---|---|---|" + "---|" * len(holders), *rows, ""]
    return "\n".join(lines)


def _script(plane_url: str, *, mcp: bool = False) -> str:
    what = ("The control plane's MCP tools over stdio for this agent (needs `pip install mcp`)" if mcp
            else "The control plane's CLI for this skill: `python3 control_plane.py --help`")
    module = "b24cp.mcp_stdio" if mcp else "b24cp.cli"
    return f'''#!/usr/bin/env python3
"""{what}.

Reads the agent token from B24CP_TOKEN (never from a file) and the plane's address from
B24CP_URL (default below). Talks to the control plane only, never to Bitrix24.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from {module} import main  # noqa: E402

PLANE_URL = {plane_url!r}

if __name__ == "__main__":
    if PLANE_URL:
        os.environ.setdefault("B24CP_URL", PLANE_URL)
    sys.exit(main())
'''

