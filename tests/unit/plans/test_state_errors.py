"""The state machine's errors as an agent or approver sees them."""

import pytest

from apps.plans.states import InvalidTransition, StaleState, can_transition, transition


def test_stale_state_is_a_409_conflict_with_a_default_message():
    error = StaleState(plan_id="p1")
    assert error.status == 409
    assert error.message == "The plan has already moved on; reload it."
    assert error.as_dict()["message"] == "The plan has already moved on; reload it."
    assert StaleState("The plan is no longer approved.").message == "The plan is no longer approved."


def test_terminal_and_unknown_states_have_no_way_out():
    for terminal in ("succeeded", "failed", "rejected", "expired", "cancelled"):
        assert not any(can_transition(terminal, target) for target in ("approved", "executing", "pending_approval"))
    assert not can_transition("nonsense", "approved")
    assert issubclass(InvalidTransition, Exception) and not issubclass(InvalidTransition, StaleState)


def test_a_move_outside_the_table_is_a_programming_error():
    with pytest.raises(InvalidTransition, match="^succeeded → approved is not a plan transition$"):
        transition(plan=None, source="succeeded", target="approved")
