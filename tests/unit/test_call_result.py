"""How a call's ending is labelled (end line, /metrics) and what its after-stream answer is."""

from __future__ import annotations

import pytest

from voicebridge.core.outcomes import Outcome, OutcomeKind
from voicebridge.server.lifetime import CallResult


@pytest.mark.parametrize(
    ("result", "label", "after"),
    [
        (CallResult("end_call", False, deliberate=True), "deliberate", OutcomeKind.HANGUP),
        (CallResult("draining", False, deliberate=True), "deliberate", OutcomeKind.HANGUP),
        (CallResult("session_limit", False, deliberate=True), "deliberate", OutcomeKind.HANGUP),
        (CallResult("idle_caller", False, deliberate=True), "idle", OutcomeKind.HANGUP),
        (
            CallResult("transfer", False, deliberate=True, destination="+14155550100"),
            "transfer",
            OutcomeKind.TRANSFER,
        ),
        (CallResult("responses_failing", True), "failed", OutcomeKind.FAILED),
        (CallResult("caller_hangup", False), "caller_hangup", None),
        (CallResult("caller_disconnected", False), "caller_hangup", None),
    ],
)
def test_each_ending_has_its_label_and_its_answer(
    result: CallResult, label: str, after: OutcomeKind | None
) -> None:
    assert result.outcome == label
    outcome = result.after_stream()
    assert (outcome.kind if outcome else None) is after


def test_a_failures_outcome_keeps_only_the_reasons_stable_head() -> None:
    """A reason may quote a peer's text: only its head goes to the (shared) store."""
    result = CallResult("upstream_lost: closed 1011 (a|b)", True)
    assert result.after_stream() == Outcome(OutcomeKind.FAILED, "upstream_lost")
    assert Outcome.decode(Outcome(OutcomeKind.FAILED, "upstream_lost").encode()) is not None


def test_a_transfer_dials_its_destination() -> None:
    result = CallResult("transfer", False, deliberate=True, destination="sip:desk@example.com")
    assert result.after_stream() == Outcome(
        OutcomeKind.TRANSFER, "transfer", "sip:desk@example.com"
    )
