"""What every example shares: an agent that works through the control plane with `b24cp`.

An example is a module with `TITLE`, `PACKS` (the packs its agent needs) and `run(agent) ->
dict`. It never talks to Bitrix24: every call is a plan. Reads run at once (policy `auto`);
writes wait for approval, which the example gives itself through `manage.py decide_plan` as the
demo's approvers (`admin`, and `reviewer` for a second approval), exactly as a person would from
a terminal. Run one against `make run`'s plane:

    B24CP_TOKEN=<demo agent token> python -m examples.s03_high_score_leads_to_tasks

(B24CP_URL defaults to http://127.0.0.1:8000, B24CP_PORTAL to demo.) The test suite runs every
example against the sandbox portal with its own approve/finish hooks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from clients.b24cp import Client, ClientError
from clients.b24cp.client import FINAL_STATES

REPO = Path(__file__).resolve().parent.parent
APPROVERS = ("admin", "reviewer")


class ScenarioError(RuntimeError):
    """A plan of the scenario did not succeed."""


def approve_with_decide_plan(plan: Mapping[str, Any]) -> None:
    """Approve as the demo's approvers, one per required approval, through `decide_plan`."""
    for username in APPROVERS[: int(plan.get("approvals_required") or 1)]:
        subprocess.run(  # noqa: S603 - fixed argv, our own manage.py
            [sys.executable, str(REPO / "manage.py"), "decide_plan", plan["id"], "--as", username, "--approve",
             "--comment", "approved by the example script"],
            check=True, cwd=REPO, capture_output=True, text=True,
        )


class Agent:
    """The plane as one agent sees it, with the steps every scenario repeats."""

    def __init__(self, client: Client, portal: str, *,
                 approve: Callable[[Mapping[str, Any]], None] = approve_with_decide_plan,
                 finish: Callable[[Client, str], dict] | None = None, wait: int = 10,
                 before_feed: Callable[[], None] | None = None):
        self.client = client
        self.wait = wait
        self.portal = portal
        self.approve = approve
        self.finish = finish or (lambda c, plan_id: c.wait(plan_id, timeout=120))
        self.plans: list[str] = []
        self.before_feed = before_feed or (lambda: None)  # the test runs the plane's event worker here

    def _settle(self, plan: dict) -> dict:
        self.plans.append(plan["id"])
        if plan["status"] == "pending_approval":
            self.approve(plan)
        if plan["status"] not in FINAL_STATES:
            plan = self.finish(self.client, plan["id"])
        if plan["status"] != "succeeded":
            raise ScenarioError(f"plan {plan['id']} ended {plan['status']}: {json.dumps(plan.get('error'))}")
        return plan

    def call(self, method: str, params: Mapping[str, Any] | None = None, *, reason: str = "",
             key: str | None = None) -> Any:
        """One call as a plan; returns the portal's `result` once the plan succeeded."""
        plan = self.client.submit(self.portal, method=method, params=params or {}, reason=reason,
                                  idempotency_key=key, wait=self.wait)
        return self._settle(plan)["result"]["steps"]["call"]["result"]

    def chain(self, steps: Sequence[Mapping[str, Any]], *, reason: str = "", key: str | None = None) -> dict:
        """Several calls as one plan (one Bitrix24 batch); returns {step name: result}."""
        plan = self.client.submit(self.portal, steps=steps, reason=reason, idempotency_key=key, wait=self.wait)
        steps_out = self._settle(plan)["result"]["steps"]
        return {name: out["result"] for name, out in steps_out.items()}

    def list_all(self, method: str, params: Mapping[str, Any] | None = None, *, limit: int = 500) -> list:
        """Page through a `*.list` method (50 rows a page, `start` = the previous answer's `next`)."""
        rows: list = []
        start: int | None = 0
        while start is not None and len(rows) < limit:
            plan = self.client.submit(self.portal, method=method, params={**(params or {}), "start": start},
                                      wait=self.wait)
            out = self._settle(plan)["result"]["steps"]["call"]
            page = out["result"]
            rows.extend(page.get("tasks", []) if isinstance(page, dict) else page)
            start = out.get("next")
        return rows[:limit]

    def on(self, portal: str) -> Agent:
        """The same agent working on another portal (e.g. one connected as an OAuth app)."""
        other = Agent(self.client, portal, approve=self.approve, finish=self.finish, wait=self.wait,
                      before_feed=self.before_feed)
        other.plans = self.plans
        return other

    def feed_cursor(self) -> str:
        """Where the event feed ends now: page to the end without keeping anything."""
        cursor = None
        while True:
            page = self.client.events(after=cursor, limit=200)
            cursor = page["next_cursor"]
            if not page["events"]:
                return cursor

    def events_since(self, cursor: str, *, event: str, until: Callable[[list[dict]], bool],
                     timeout: float = 60.0, limit: int = 50) -> tuple[list[dict], str]:
        """Events named `event` on this agent's portal after `cursor`, paging `limit` at a time,
        until `until(found)` holds or `timeout` s passed; returns them and the cursor to resume from."""
        found: list[dict] = []
        deadline = time.monotonic() + timeout
        while not until(found) and time.monotonic() < deadline:
            self.before_feed()
            page = self.client.events(after=cursor, wait=1, limit=limit)
            cursor = page["next_cursor"]
            found.extend(e for e in page["events"] if e["event"] == event and e["portal"] == self.portal)
        return found, cursor

    @staticmethod
    def object_ids(events: list[dict]) -> set[int]:
        """The IDs of the objects CRM events name (`data[FIELDS][ID]`)."""
        return {int(e["data"]["FIELDS"]["ID"]) for e in events
                if isinstance(e.get("data"), dict) and str((e["data"].get("FIELDS") or {}).get("ID", "")).isdigit()}

def main(run: Callable[[Agent], dict]) -> None:
    try:
        agent = Agent(Client.from_env(), os.environ.get("B24CP_PORTAL", "demo"))
        summary = run(agent)
    except (ClientError, ScenarioError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", None) or ""
        sys.exit(f"{type(exc).__name__}: {exc} {detail}".strip())
    print(json.dumps({"summary": summary, "plans": agent.plans}, ensure_ascii=False, indent=2))
