"""Idempotency keys at their edges: what a key may be, when a key expires or is abandoned (the
boundaries themselves), and what the purge keeps. Written against the survivors of `make mutate
MUTATE_ONLY=idempotency` (bench/README.md, "Mutation testing"); each test goes through the
module's public functions with the clock held still."""

import datetime

import pytest
from django.conf import settings
from django.utils import timezone

from apps.core.exceptions import IdempotencyInProgress, IdempotencyMismatch, InvalidRequest
from apps.plans import idempotency, services
from apps.plans.models import IdempotencyRecord

pytestmark = pytest.mark.django_db

NOW = datetime.datetime(2026, 11, 24, 12, 0, tzinfo=datetime.UTC)
TTL = datetime.timedelta(seconds=settings.IDEMPOTENCY_KEY_TTL)
ABANDONED = datetime.timedelta(minutes=5)
SECOND = datetime.timedelta(seconds=1)
WRITE = [{"name": "call", "method": "crm.lead.add", "params": {"fields": {"TITLE": "x"}}}]


@pytest.fixture
def frozen(monkeypatch):
    monkeypatch.setattr(timezone, "now", lambda: NOW)
    return NOW


def record(agent, *, key="k", request_hash="h", age, plan=None):
    row = IdempotencyRecord.objects.create(agent=agent, key=key, request_hash=request_hash, plan=plan)
    IdempotencyRecord.objects.filter(pk=row.pk).update(created_at=NOW - age)
    return row


def a_plan(agent, portal):
    return services.plan_submit(agent=agent, portal=portal, steps=WRITE).plan


@pytest.mark.parametrize("key", ["k", " ", "~", "a" * 255, "Az09 !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"])
def test_printable_ascii_keys_of_1_to_255_characters_are_accepted(key):
    assert idempotency.validate_key(key) == key


@pytest.mark.parametrize("key", ["", "a" * 256, "tab\there", "new\nline", "caf\u00e9", "\x7f", 5, None, b"k"])
def test_other_keys_are_refused_naming_the_field(key):
    with pytest.raises(InvalidRequest) as refused:
        idempotency.validate_key(key)
    assert refused.value.extra == {"field": "idempotency_key"}
    assert refused.value.message == "An idempotency key is 1–255 printable ASCII characters."


def test_a_key_exactly_as_old_as_its_ttl_is_taken_over_even_with_another_body(frozen, agent, portal):
    old = record(agent, request_hash="old", age=TTL, plan=a_plan(agent, portal))
    claim = idempotency.claim(agent=agent, key="k", request_hash="new")
    assert claim.replay is None and claim.record.pk == old.pk
    assert (claim.record.request_hash, claim.record.plan_id, claim.record.created_at) == ("new", None, NOW)
    stored = IdempotencyRecord.objects.get(pk=old.pk)
    assert (stored.request_hash, stored.plan_id, stored.created_at) == ("new", None, NOW)


def test_a_key_one_second_short_of_its_ttl_still_replays_its_plan(frozen, agent, portal):
    plan = a_plan(agent, portal)
    record(agent, age=TTL - SECOND, plan=plan)
    claim = idempotency.claim(agent=agent, key="k", request_hash="h")
    assert claim.record is None and claim.replay.pk == plan.pk
    with pytest.raises(IdempotencyMismatch):
        idempotency.claim(agent=agent, key="k", request_hash="other")


def test_a_finished_key_is_never_abandoned(frozen, agent, portal):
    plan = a_plan(agent, portal)
    record(agent, age=ABANDONED, plan=plan)
    assert idempotency.claim(agent=agent, key="k", request_hash="h").replay.pk == plan.pk


def test_an_unfinished_key_is_abandoned_after_exactly_five_minutes(frozen, agent):
    orphan = record(agent, request_hash="old", age=ABANDONED)
    claim = idempotency.claim(agent=agent, key="k", request_hash="new")
    assert claim.replay is None and claim.record.pk == orphan.pk
    assert IdempotencyRecord.objects.get(pk=orphan.pk).created_at == NOW
    with pytest.raises(IdempotencyInProgress):  # now owned again, and busy
        idempotency.claim(agent=agent, key="k", request_hash="new")


def test_an_unfinished_key_younger_than_five_minutes_is_in_progress(frozen, agent):
    record(agent, age=ABANDONED - SECOND)
    with pytest.raises(IdempotencyInProgress):
        idempotency.claim(agent=agent, key="k", request_hash="h")
    assert IdempotencyRecord.objects.get(agent=agent, key="k").created_at == NOW - ABANDONED + SECOND


def test_purge_removes_keys_from_their_ttl_on_and_keeps_younger_ones(agent):
    record(agent, key="expired", age=TTL)
    record(agent, key="older", age=TTL + datetime.timedelta(days=3))
    record(agent, key="young", age=TTL - SECOND)
    record(agent, key="fresh", age=datetime.timedelta(0))
    assert idempotency.purge_expired(now=NOW) == 2
    assert set(IdempotencyRecord.objects.values_list("key", flat=True)) == {"young", "fresh"}
