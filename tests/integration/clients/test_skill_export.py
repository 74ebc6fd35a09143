"""`manage.py export_skill`: the folder's layout, no token in it, and its script against a live plane."""

import json
import subprocess
import sys

import pytest
from django.core.management import CommandError, call_command

from apps.plans.models import Plan

pytestmark = pytest.mark.django_db(transaction=True)


def front_matter(text):
    assert text.startswith("---\n")
    head, _, body = text[4:].partition("\n---\n")
    return head, body


def run_script(folder, *args, token, url=None):
    """The exported script, run as an agent runtime would: isolated mode (-I: no PYTHONPATH, no
    repository on sys.path), from another directory, token and URL only in the environment."""
    env = {"B24CP_TOKEN": token, "PATH": "/usr/bin:/bin", **({"B24CP_URL": url} if url else {})}
    done = subprocess.run([sys.executable, "-I", str(folder / "scripts" / "control_plane.py"), "--json", *args],
                          env=env, cwd=folder.parent, capture_output=True, text=True, timeout=60)
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else None


@pytest.fixture
def exported(tmp_path, live_server, plane_agent):
    folder = tmp_path / "bitrix24-demo"
    call_command("export_skill", plane_agent.slug, "--out", str(folder), "--url", live_server.url)
    return folder


def test_layout_and_front_matter(exported, plane_agent):
    files = sorted(str(p.relative_to(exported)) for p in exported.rglob("*") if p.is_file())
    assert files == ["SKILL.md", "references/catalog-core.md", "references/packs.md",
                     "scripts/b24cp/__init__.py",
                     "scripts/b24cp/__main__.py", "scripts/b24cp/cli.py", "scripts/b24cp/client.py",
                     "scripts/b24cp/mcp_stdio.py", "scripts/b24cp/mcp_tools.py", "scripts/control_plane.py",
                     "scripts/mcp_server.py"]
    head, body = front_matter((exported / "SKILL.md").read_text())
    assert "name: bitrix24-demo\n" in head  # the folder's name, as portable skills require
    assert "description: Read and change Bitrix24 (core packs) on portal demo" in head
    assert "primaryEnv: B24CP_TOKEN" in head and "- B24CP_TOKEN" in head
    assert "pending_approval" in body and "approve2" in body and "| demo | `core` | auto | approve | approve2 |" in body

    core = (exported / "references/catalog-core.md").read_text()
    assert "| `crm.lead.add` | crm | write | approve |" in core
    assert "| `crm.lead.delete` | crm | destructive | approve2 |" in core
    assert "| `user.current` |" in core
    assert "im.message.add" not in core  # comms is not granted: neither a file nor its methods
    assert "[`core`](catalog-core.md)" in (exported / "references/packs.md").read_text()


def test_the_folder_holds_no_token(exported, plane_agent):
    for path in exported.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert plane_agent.token.encode() not in content, path
            assert plane_agent.token[:10].encode() not in content, path  # not even the prefix


def test_a_denied_method_is_left_out_and_policies_follow_the_grant(tmp_path, sandbox_portal, make_agent):
    agent = make_agent("careful", portal=sandbox_portal, packs=("core", "comms"), destructive="deny", write="auto")
    folder = tmp_path / "careful-skill"
    call_command("export_skill", "careful", "--out", str(folder), "--name", "careful")
    assert "name: careful\n" in (folder / "SKILL.md").read_text()
    assert "- B24CP_URL" in (folder / "SKILL.md").read_text()  # no --url: the agent must set it
    core = (folder / "references/catalog-core.md").read_text()
    assert "| `crm.lead.add` | crm | write | auto |" in core
    assert "crm.lead.delete" not in core
    assert (folder / "references/catalog-comms.md").exists()
    assert agent.token.encode() not in b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


def test_refusals(tmp_path, sandbox_portal, make_agent, plane_agent):
    make_agent("nogrants")
    with pytest.raises(CommandError, match="holds no active grant"):
        call_command("export_skill", "nogrants", "--out", str(tmp_path / "x"))
    with pytest.raises(CommandError, match="No active agent"):
        call_command("export_skill", "ghost", "--out", str(tmp_path / "x"))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    for extra in ([], ["--force"]):
        with pytest.raises(CommandError):
            call_command("export_skill", plane_agent.slug, "--out", str(tmp_path / "busy"), *extra)
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    with pytest.raises(CommandError, match="skill name"):
        call_command("export_skill", plane_agent.slug, "--out", str(tmp_path / "y"), "--name", "Bad Name")
    call_command("export_skill", plane_agent.slug, "--out", str(tmp_path / "again"))
    call_command("export_skill", plane_agent.slug, "--out", str(tmp_path / "again"), "--force")  # re-export


def test_the_script_completes_a_read_and_a_pending_write(exported, live_server, plane_agent, celery_drain):
    token = plane_agent.token
    code, caps = run_script(exported, "capabilities", token=token)  # the URL given to export_skill
    assert code == 0 and caps["portals"][0]["portal"] == "demo"

    # a read: accepted at once (auto), executed by the worker, then reported succeeded
    code, read = run_script(exported, "submit", "user.current", "--portal", "demo", token=token, url=live_server.url)
    assert code == 3 and read["status"] == "approved"
    celery_drain()
    code, done = run_script(exported, "get", read["id"], token=token, url=live_server.url)
    assert code == 0 and done["status"] == "succeeded"
    assert done["result"]["steps"]["call"]["result"]["ID"]

    # a write waits for an approver
    code, write = run_script(exported, "submit", "crm.lead.add", "--portal", "demo", "--params",
                             '{"fields": {"TITLE": "From the skill"}}', "--reason", "skill test",
                             token=token, url=live_server.url)
    assert code == 3 and write["status"] == "pending_approval" and write["risk"] == "write"
    assert Plan.objects.get(pk=write["id"]).steps[0]["params"] == {"fields": {"TITLE": "From the skill"}}

    # refused: comms is not granted, and the error names it
    code, refused = run_script(exported, "submit", "im.message.add", "--portal", "demo", token=token,
                               url=live_server.url)
    assert code == 4 and refused["error"]["code"] == "not_granted" and refused["error"]["pack"] == "comms"

    # B24CP_URL overrides the built-in URL; an unreachable plane is exit 6, not a traceback
    code, answer = run_script(exported, "capabilities", token=token, url="http://127.0.0.1:9")
    assert code == 6 and answer["error"]["code"] == "unreachable"


def test_the_folder_serves_mcp_over_stdio(exported, plane_agent):
    import anyio
    from mcp import Client, StdioServerParameters

    params = StdioServerParameters(command=sys.executable, args=["-I", str(exported / "scripts" / "mcp_server.py")],
                                   env={"B24CP_TOKEN": plane_agent.token, "PATH": "/usr/bin:/bin"},
                                   cwd=str(exported.parent))

    async def main():
        async with Client(params) as client:
            tools = [t.name for t in (await client.list_tools()).tools]
            described = await client.call_tool("describe_method", {"name": "crm.lead.add", "portal": "demo"})
            return tools, described.structured_content

    tools, described = anyio.run(main)
    assert tools == ["capabilities", "describe_method", "submit_plan", "get_plan", "cancel_plan", "list_plans",
                     "start_export", "get_export", "cancel_export", "read_events"]
    assert described["risk"] == "write" and described["policy"] == "approve"
