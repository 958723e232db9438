"""Call outcomes and the after-stream TwiML they choose."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from voicebridge.core.outcomes import MemoryOutcomes, Outcome, OutcomeKind
from voicebridge.core.twiml import after_stream_twiml, stream_twiml

SORRY = "Sorry, we could not connect your call."


def verbs(twiml: str) -> list[tuple[str, str]]:
    return [(el.tag, (el.text or "").strip()) for el in ET.fromstring(twiml)]


def test_a_deliberate_ending_hangs_up_without_a_word() -> None:
    assert verbs(after_stream_twiml(Outcome(OutcomeKind.HANGUP, "end_call"), SORRY)) == [
        ("Hangup", "")
    ]


def test_a_transfer_dials_the_destination() -> None:
    outcome = Outcome(OutcomeKind.TRANSFER, "transfer", "+18005550100")
    assert verbs(after_stream_twiml(outcome, SORRY)) == [("Dial", "+18005550100")]


def test_a_failure_or_an_unknown_call_gets_the_apology() -> None:
    expected = [("Say", SORRY), ("Hangup", "")]
    assert (
        verbs(after_stream_twiml(Outcome(OutcomeKind.FAILED, "upstream_lost"), SORRY)) == expected
    )
    assert verbs(after_stream_twiml(None, SORRY)) == expected


def test_the_stream_answer_names_the_action() -> None:
    xml = stream_twiml("wss://h/realtime", {}, action="https://h/twilio/after-stream")
    connect = ET.fromstring(xml).find("Connect")
    assert connect is not None and connect.get("action") == "https://h/twilio/after-stream"


def test_outcomes_round_trip_through_their_encoding() -> None:
    for outcome in (
        Outcome(OutcomeKind.HANGUP, "idle"),
        Outcome(OutcomeKind.TRANSFER, "transfer", "sip:desk@example.com"),
        Outcome(OutcomeKind.FAILED),
    ):
        assert Outcome.decode(outcome.encode()) == outcome
    assert Outcome.decode("nonsense|x|y") is None


async def test_an_outcome_is_taken_once_and_expires() -> None:
    now = [0.0]
    store = MemoryOutcomes(ttl_s=60.0, limit=100, clock=lambda: now[0])
    await store.put("CA1", Outcome(OutcomeKind.HANGUP, "end_call"))
    await store.put("CA2", Outcome(OutcomeKind.FAILED, "x"))
    assert await store.take("CA1") == Outcome(OutcomeKind.HANGUP, "end_call")
    assert await store.take("CA1") is None
    now[0] = 61.0
    assert await store.take("CA2") is None


async def test_the_store_is_bounded_oldest_first() -> None:
    store = MemoryOutcomes(ttl_s=60.0, limit=2, clock=lambda: 0.0)
    for sid in ("CA1", "CA2", "CA3"):
        await store.put(sid, Outcome(OutcomeKind.HANGUP))
    assert await store.take("CA1") is None
    assert await store.take("CA3") is not None
