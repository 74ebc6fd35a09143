"""The README works as printed: every `manage.py` command it shows runs from a fresh shell that
has nothing but the `.env` `make run` writes (after `migrate` and `seed_demo`, as `make run` does),
exits 0 and prints no traceback. `<plan id>` is filled with a plan the demo agent submitted."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from controlplane import envfile

ROOT = Path(__file__).resolve().parents[2]
MANAGE = ".venv/bin/python manage.py "


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = " ".join(line.split())
            if line.startswith(MANAGE):
                commands.append(line[len(MANAGE):].split("#")[0].strip())
    return commands


@pytest.fixture(scope="module")
def shell(tmp_path_factory):
    """A fresh shell: PATH and HOME, ENV_FILE naming a `.env` written like `make run` writes it."""
    home = tmp_path_factory.mktemp("readme")
    env_file = home / ".env"
    envfile.write_once(env_file, envfile.embedded_default(data_dir=home / "var",
                                                          sandbox_base_url="http://127.0.0.1:8000"))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "ENV_FILE": str(env_file),
           "PYTHONPATH": str(ROOT)}

    def run(args: str | list[str]) -> subprocess.CompletedProcess:
        argv = shlex.split(args) if isinstance(args, str) else args
        return subprocess.run([sys.executable, str(ROOT / "manage.py"), *argv], cwd=home, env=env,
                              capture_output=True, text=True, timeout=180)

    for setup in ("migrate --noinput", "seed_demo"):
        done = run(setup)
        assert done.returncode == 0, done.stderr[-3000:]
    return run


def test_the_readme_shows_the_commands_it_promises():
    commands = readme_commands()
    names = {c.split()[0] for c in commands}
    assert {"add_portal", "approvers", "create_agent", "decide_plan", "export_skill", "rotate_keys",
            "audit_verify", "audit_checkpoint", "audit_export", "sandbox_fault"} <= names, names


def test_every_readme_command_runs_as_printed(shell):
    commands = readme_commands()
    wanted = sum(c.count("<plan id>") + c.count("<id>") for c in commands)
    submit = shell(["shell", "-c", "\n".join([
        "from apps.agents.models import Agent",
        "from apps.plans.services import plan_submit",
        "from apps.portals.models import Portal",
        "p = plan_submit(agent=Agent.objects.get(slug='demo-agent'), portal=Portal.objects.get(slug='demo'),",
        "    steps=[{'name': 'call', 'method': 'crm.lead.add', 'params': {'fields': {'TITLE': 'x'}}}]).plan",
        f"print(*[p.pk for p in [p] + [plan_submit(agent=p.agent, portal=p.portal, steps=p.steps).plan"
        f" for _ in range({wanted} - 1)]])"])])
    assert submit.returncode == 0, submit.stderr[-3000:]
    plan_ids = submit.stdout.strip().splitlines()[-1].split()
    for command in commands:
        while "<plan id>" in command or "<id>" in command:
            placeholder = "<plan id>" if "<plan id>" in command else "<id>"
            command = command.replace(placeholder, plan_ids.pop(0), 1)
        done = shell(command)
        assert done.returncode == 0, f"{command}\n{done.stdout[-1500:]}\n{done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr, command
