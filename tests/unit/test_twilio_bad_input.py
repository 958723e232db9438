"""Each kind of bad Twilio input is counted under its reason, and the call goes on around it.

Unparseable text is the parser's to name (the shell counts the reason it raises); everything
that parses is ``CallCore``'s to count. One end-to-end call in tests/e2e/test_bad_input.py
sends them all through a real socket.
"""

from __future__ import annotations

import pytest

from tests.support.bad_twilio_input import BAD_INPUTS, FRAME, BadInput, writer
from voicebridge.core import realtime as rt
from voicebridge.core import twilio as tw
from voicebridge.core.actions import EndCall, Ignored, Probe, SendUpstream
from voicebridge.core.call import CallCore, Phase
from voicebridge.errors import TwilioProtocolError
from voicebridge.twilio_sim.script import TwilioWriter

TEXT_INPUTS = [bad for bad in BAD_INPUTS if bad.found_by != "socket"]


def receive(core: CallCore, frame: str | bytes, now: float) -> list[object]:
    assert isinstance(frame, str)
    return list(core.receive_twilio(tw.parse_twilio(frame), now))


def feed_bad(core: CallCore, bad: BadInput, w: TwilioWriter, now: float) -> None:
    """The parser refuses the frame with its reason, or CallCore ignores it for it."""
    frame = bad.frame(w)
    assert isinstance(frame, str)
    if bad.found_by == "parser":
        with pytest.raises(TwilioProtocolError) as info:
            tw.parse_twilio(frame)
        assert info.value.reason == bad.reason
    else:
        assert core.receive_twilio(tw.parse_twilio(frame), now) == [Ignored(bad.reason)]


@pytest.mark.parametrize("bad", TEXT_INPUTS, ids=[bad.name for bad in TEXT_INPUTS])
def test_bad_input_is_counted_and_the_call_goes_on(bad: BadInput) -> None:
    """The bad frame is counted once under its reason; media before and after it goes up."""
    w = writer("MZ" + "1" * 32, "CA" + "2" * 32)
    core = CallCore(rt.SessionConfig(instructions="hi", voice="marin"))
    if bad.before_start:
        feed_bad(core, bad, w, 0.0)
    assert receive(core, w.start(), 0.0) == [Probe()]
    for n in range(10):
        [up] = receive(core, w.media(FRAME, n * 20), n * 20.0)
        assert isinstance(up, SendUpstream) and up.audio
    if not bad.before_start:
        feed_bad(core, bad, w, 200.0)
    assert core.phase is Phase.STREAMING
    for n in range(12, 30):
        [up] = receive(core, w.media(FRAME, n * 20), n * 20.0)
        assert isinstance(up, SendUpstream) and up.audio
    assert receive(core, w.stop(), 600.0) == [EndCall("caller_hangup", failed=False)]
    assert core.stats.frames_in == 28
    assert core.stats.ignored == ({bad.reason: 1} if bad.found_by == "core" else {})


def test_repeated_bad_input_is_logged_once_and_counted_each_time() -> None:
    """Only the first of a reason asks for a log line; every one is counted."""
    w = writer("MZ" + "1" * 32, "CA" + "2" * 32)
    core = CallCore(rt.SessionConfig(instructions="hi", voice="marin"))
    receive(core, w.start(), 0.0)
    assert receive(core, w.mark("never-sent"), 1.0) == [Ignored("unknown_mark")]
    assert receive(core, w.mark("never-sent"), 2.0) == []
    assert core.stats.ignored == {"unknown_mark": 2}


def test_unknown_event_names_are_one_reason_and_a_few_names() -> None:
    """Any number of unknown event names count under one reason; the end line keeps 8, cut short."""
    core = CallCore(rt.SessionConfig(instructions="hi", voice="marin"))
    actions = [core.receive_twilio(tw.Unknown(f"{n:04d}" + "x" * 500), 0.0) for n in range(2000)]
    assert actions[0] == [Ignored("unknown_event")] and not any(actions[1:])
    assert core.stats.ignored == {"unknown_event": 2000}
    names = core.stats.unknown_events
    assert len(names) == 9 and names["other"] == 2000 - 8
    assert all(len(name) <= 32 for name in names)
