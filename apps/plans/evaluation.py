"""What a plan is checked against, with no writes: the content hash an approval binds to and the
policy decision under the agent's current grants.

Shared by the services (submit, decide) and the executor (the check right before sending), so the
executor does not depend on the services module.
"""

import json

from django.db.models import Aggregate, JSONField, OuterRef, Q, Subquery
from django.db.models.functions import JSONObject
from django.utils import timezone

from apps.core.canonical import sha256_hex
from apps.policy.decide import Decision, GrantView, Step, decide
from apps.policy.models import PackGrant
from apps.policy.selectors import grant_views_for, grant_views_of

from .choices import PlanStatus


def content_hash(*, portal_slug: str, steps: list[dict]) -> str:
    """What an approval binds to: SHA-256 of the canonical JSON of portal + steps."""
    return sha256_hex({"portal": portal_slug, "steps": steps})


class _JSONList(Aggregate):
    """The rows' values as one JSON array (PostgreSQL JSON_AGG, SQLite JSON_GROUP_ARRAY)."""

    function = "JSON_AGG"
    output_field = JSONField()

    def as_sqlite(self, compiler, connection, **extra_context):
        return super().as_sql(compiler, connection, function="JSON_GROUP_ARRAY", **extra_context)

    def as_postgresql(self, compiler, connection, **extra_context):
        sql, params = super().as_sql(compiler, connection, **extra_context)
        return f"({sql})::text", params  # text, as JSONField reads it (psycopg would decode json itself)


def active_grants_json(*, agent=None, portal=None) -> Subquery:
    """An annotation: the active grants of `agent` on `portal` (default: the annotated row's
    `agent_id` and `portal_id`) as a JSON list, so they come with the row that needs them
    instead of in a query of their own. `grant_views_from` turns it into `GrantView`s."""
    rows = (PackGrant.objects.filter(agent=agent if agent is not None else OuterRef("agent_id"),
                                     portal=portal if portal is not None else OuterRef("portal_id"))
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now()))
            .order_by().values("agent_id")
            .annotate(rows=_JSONList(JSONObject(pack="pack", read_policy="read_policy", write_policy="write_policy",
                                                destructive_policy="destructive_policy")))
            .values("rows"))
    return Subquery(rows, output_field=JSONField())


def grant_views_from(rows) -> list[GrantView]:
    """The `GrantView`s of an `active_grants_json` annotation (None: no active grant)."""
    if isinstance(rows, str | bytes):
        rows = json.loads(rows)
    grants = [PackGrant(**row) for row in sorted(rows or [], key=lambda row: row["pack"])]
    return grant_views_of(grants)


def plan_evaluate(*, agent, portal, steps: list[dict], grant_rows=None) -> Decision:
    """Apply the pure policy to the agent's current grants (`grant_rows`: an `active_grants_json`
    value read with the portal). Raises PolicyInputError on bad steps."""
    grants = grant_views_for(agent=agent, portal=portal) if grant_rows is None else grant_views_from(grant_rows)
    return decide(grants, [Step(name=s["name"], method=s["method"], params=s.get("params") or {}) for s in steps])


def normalized_steps(decision: Decision) -> list[dict]:
    """The steps as the policy normalised them: exactly what is stored, hashed and sent."""
    return [{"name": s.name, "method": s.method, "params": s.params} for s in decision.steps]


def status_after_submit(decision: Decision) -> str:
    """Where an allowed plan goes once submitted: no approvals needed means approved."""
    return PlanStatus.APPROVED if decision.approvals_required == 0 else PlanStatus.PENDING_APPROVAL
