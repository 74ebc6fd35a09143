"""What a plan is checked against, with no writes: the content hash an approval binds to and the
policy decision under the agent's current grants.

Shared by the services (submit, decide) and the executor (the check right before sending), so the
executor does not depend on the services module.
"""

from apps.core.canonical import sha256_hex
from apps.policy.decide import Decision, Step, decide
from apps.policy.selectors import grant_views_for

from .choices import PlanStatus


def content_hash(*, portal_slug: str, steps: list[dict]) -> str:
    """What an approval binds to: SHA-256 of the canonical JSON of portal + steps."""
    return sha256_hex({"portal": portal_slug, "steps": steps})


def plan_evaluate(*, agent, portal, steps: list[dict]) -> Decision:
    """Apply the pure policy to the agent's current grants. Raises PolicyInputError on bad steps."""
    grants = grant_views_for(agent=agent, portal=portal)
    return decide(grants, [Step(name=s["name"], method=s["method"], params=s.get("params") or {}) for s in steps])


def normalized_steps(decision: Decision) -> list[dict]:
    """The steps as the policy normalised them: exactly what is stored, hashed and sent."""
    return [{"name": s.name, "method": s.method, "params": s.params} for s in decision.steps]


def status_after_submit(decision: Decision) -> str:
    """Where an allowed plan goes once submitted: no approvals needed means approved."""
    return PlanStatus.APPROVED if decision.approvals_required == 0 else PlanStatus.PENDING_APPROVAL
