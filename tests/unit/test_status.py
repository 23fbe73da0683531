"""Task statuses and their allowed transitions."""

from __future__ import annotations

import pytest

from burrow.tasks.status import TERMINAL, TRANSITIONS, TaskStatus, can_move


def test_status_values_are_the_spec_names() -> None:
    """The six status values are exactly the documented ones (queued, running, retrying and
    the three terminal states)."""
    assert {s.value for s in TaskStatus} == {
        "queued",
        "running",
        "retrying",
        "succeeded",
        "failed",
        "cancelled",
    }


def test_terminal_states_are_succeeded_failed_cancelled() -> None:
    """Exactly succeeded, failed and cancelled are terminal."""
    assert {TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED} == TERMINAL
    assert {s for s in TaskStatus if s.terminal} == TERMINAL


@pytest.mark.parametrize("state", sorted(TERMINAL))
def test_terminal_states_have_no_transitions(state: TaskStatus) -> None:
    """A terminal state can move nowhere, not even to itself."""
    assert TRANSITIONS[state] == frozenset()
    assert not any(can_move(state, target) for target in TaskStatus)


def test_every_status_has_a_transition_entry() -> None:
    """The transition table covers every status."""
    assert set(TRANSITIONS) == set(TaskStatus)


@pytest.mark.parametrize("state", [s for s in TaskStatus if not s.terminal])
def test_live_states_can_fail_or_be_cancelled(state: TaskStatus) -> None:
    """Every non-terminal state can still reach failed and cancelled."""
    assert can_move(state, TaskStatus.FAILED)
    assert can_move(state, TaskStatus.CANCELLED)


def test_only_running_can_succeed() -> None:
    """A task succeeds only from running (a handler must have returned)."""
    assert {s for s in TaskStatus if can_move(s, TaskStatus.SUCCEEDED)} == {TaskStatus.RUNNING}
