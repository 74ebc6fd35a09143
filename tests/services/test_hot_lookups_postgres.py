"""The submission's fixed statements (apps.core.sql) on PostgreSQL: the same answers as on the
suite's SQLite (the tests of tests/integration/plans/test_hot_lookups.py and
tests/integration/core/test_sql.py run here again), and each statement prepared once per
connection."""


import pytest
from django.db import connection

from apps.agents import auth
from apps.plans import services
from tests.integration.core.test_sql import (  # noqa: F401 - collected here again, on PostgreSQL
    test_a_loaded_row_is_the_instance_the_orm_builds,
    test_an_insert_stores_what_save_would,
    test_many_rows_in_one_statement_get_their_ids_in_order,
)
from tests.integration.plans.test_hot_lookups import (  # noqa: F401 - collected here again, on PostgreSQL
    bearer,
    test_a_portal_the_agent_may_not_see_answers_like_a_missing_one,
    test_a_portal_with_only_expired_grants_is_found_with_none_active,
    test_a_revoked_or_unknown_token_is_refused,
    test_each_lookup_is_one_statement_and_shows_in_the_query_log,
    test_the_agent_comes_back_as_the_orm_loads_it_without_its_callback_secret,
    test_the_portal_comes_with_exactly_the_active_grants,
)
from tests.services import needs_postgres

pytestmark = [
    pytest.mark.services,
    needs_postgres,
    pytest.mark.django_db,
]


def prepared() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


def test_the_lookups_are_prepared_once_per_connection(make_agent, portal):
    agent = make_agent(portal=portal)
    for _ in range(3):
        auth.authenticate_agent(bearer(agent.token))
        services.portal_for_agent(agent=agent, slug="acme")
    statements = prepared()
    assert sum("token_hash" in s for s in statements) == 1
    assert sum("EXISTS" in s and "policy_packgrant" in s for s in statements) == 1
