"""The sandbox portal's own transactions commit without waiting for the WAL flush on PostgreSQL
(apps.sandbox.tx.portal_atomic), and never change how a caller's transaction commits."""


import pytest
from django.db import connection, transaction

from apps.sandbox.tx import portal_atomic
from tests.services import needs_postgres

pytestmark = [
    pytest.mark.services,
    needs_postgres,
    pytest.mark.django_db(transaction=True),
]


def synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


def test_the_sandbox_transaction_alone_commits_asynchronously():
    before = synchronous_commit()
    with portal_atomic():
        assert synchronous_commit() == "off"
    assert synchronous_commit() == before != "off"  # SET LOCAL: gone with the transaction


def test_inside_a_callers_transaction_nothing_changes():
    with transaction.atomic():
        with portal_atomic():
            assert synchronous_commit() != "off"  # the caller's commit stays synchronous
