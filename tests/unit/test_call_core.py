"""Bridge decisions for one call, driven with parsed events and explicit times."""

from __future__ import annotations

import base64
import json

import pytest

from tests.support.call_core import (
    DELTA,
    SID,
    play_response,
    policy_core,
    ready_core,
    session,
    start_event,
    upstream,
)
from tests.support.conformance import CLIENT_EVENT
from voicebridge.core import realtime as rt
from voicebridge.core import twilio as tw
from voicebridge.core.actions import (
    ClosingStarted,
    EndCall,
    FlushPlayback,
    Ignored,
    Playback,
    RunTool,
    SendTwilio,
    SendUpstream,
    Timing,
)
from voicebridge.core.call import CallCore


def test_media_goes_upstream_untouched() -> None:
    """Caller audio becomes input_audio_buffer.append with the same base64."""
    core = ready_core()
    [action] = core.receive_twilio(tw.Media(SID, 20, "AAEC", 1), 1.0)
    assert isinstance(action, SendUpstream) and action.audio
    assert json.loads(action.text) == {"type": "input_audio_buffer.append", "audio": "AAEC"}
    CLIENT_EVENT.validate_json(action.text)
    assert core.stats.frames_in == 1


def test_media_before_start_and_foreign_stream_are_counted() -> None:
    """Out-of-order or foreign media is ignored and counted by reason."""
    core = CallCore(rt.SessionConfig(instructions="hi", voice="marin"))
    assert core.receive_twilio(tw.Media(SID, 0, "AA==", 1), 0.0) == [Ignored("media_before_start")]
    assert core.receive_twilio(tw.Media(SID, 0, "AA==", 1), 0.0) == []  # logged once per call
    core.receive_twilio(start_event(), 0.0)
    assert core.receive_twilio(tw.Media("MZother", 0, "AA==", 1), 0.0) == [
        Ignored("wrong_stream_sid")
    ]
    assert core.receive_twilio(start_event(), 0.0) == [Ignored("second_start")]
    assert core.stats.ignored == {"media_before_start": 2, "wrong_stream_sid": 1, "second_start": 1}


def test_stop_ends_the_call_normally() -> None:
    """Twilio's stop ends the call without the failure path."""
    core = ready_core()
    assert core.receive_twilio(tw.Stop(SID), 5.0) == [EndCall("caller_hangup", failed=False)]


def test_wrong_session_format_fails_the_call() -> None:
    """A session that would play PCM as μ-law ends the call through the failure path."""
    core = CallCore(rt.SessionConfig(instructions="hi", voice="marin"))
    core.receive_twilio(start_event(), 0.0)
    [end] = core.receive_realtime(rt.SessionUpdated(session(out="audio/pcm")), 0.0)
    assert isinstance(end, EndCall) and end.failed
    assert "session_format_mismatch" in end.reason


def test_each_chunk_is_followed_by_a_unique_mark() -> None:
    """Model audio is forwarded as-is, each chunk followed by its own mark."""
    core = ready_core()
    sent = [json.loads(t) for t in play_response(core, 3, 100.0)]
    media = [m for m in sent if m["event"] == "media"]
    marks = [m["mark"]["name"] for m in sent if m["event"] == "mark"]
    assert [m["media"]["payload"] for m in media] == [DELTA] * 3
    assert len(set(marks)) == len(marks) >= 3
    assert core.stats.chunks_out == 3
    assert core.stats.audio_out_ms == pytest.approx(300.0)


def test_barge_in_clears_truncates_and_drops_late_audio() -> None:
    """Speech over playing audio: clear, truncate at heard, late deltas dropped."""
    core = ready_core()
    play_response(core, 20, 100.0)  # 2 s written at t=100
    core.receive_realtime(rt.ResponseDone("resp_1", "completed", None, None, []), 150.0)
    # Audio is still playing although the response is done: the common case.
    actions = core.receive_realtime(rt.SpeechStarted("item_u", 700), 800.0)
    assert isinstance(actions[0], FlushPlayback)
    assert isinstance(actions[1], SendTwilio)
    assert json.loads(actions[1].text) == {"event": "clear", "streamSid": SID}
    [truncate] = [a for a in actions if isinstance(a, SendUpstream)]
    event = json.loads(truncate.text)
    CLIENT_EVENT.validate_json(truncate.text)
    assert event["type"] == "conversation.item.truncate"
    assert event["item_id"] == "item_1" and event["content_index"] == 0
    assert event["audio_end_ms"] == 700  # no echoes yet, no network: written 700 ms ago
    assert core.stats.barge_ins == 1 and core.stats.truncations == 1
    assert core.receive_realtime(rt.AudioDelta("resp_1", "item_1", DELTA), 810.0) == []
    assert core.stats.late_deltas_dropped == 1


def test_no_cancel_when_the_server_interrupts_itself() -> None:
    """With interrupt_response on, response.cancel is never sent."""
    core = ready_core(interrupt=True)
    play_response(core, 10, 0.0)
    actions = core.receive_realtime(rt.SpeechStarted("u", 0), 100.0)
    assert not any("response.cancel" in a.text for a in actions if isinstance(a, SendUpstream))


def test_cancel_when_interrupt_response_is_off() -> None:
    """With interrupt_response off, an active response is cancelled by the bridge."""
    core = ready_core(interrupt=False)
    play_response(core, 10, 0.0)
    actions = core.receive_realtime(rt.SpeechStarted("u", 0), 100.0)
    cancels = [a for a in actions if isinstance(a, SendUpstream) and "response.cancel" in a.text]
    assert len(cancels) == 1
    CLIENT_EVENT.validate_json(cancels[0].text)
    assert json.loads(cancels[0].text)["response_id"] == "resp_1"


def test_no_cancel_once_the_response_is_done() -> None:
    """A finished response is not cancelled, even with interrupt_response off."""
    core = ready_core(interrupt=False)
    play_response(core, 10, 0.0)
    core.receive_realtime(rt.ResponseDone("resp_1", "completed", None, None, []), 10.0)
    actions = core.receive_realtime(rt.SpeechStarted("u", 0), 100.0)
    assert not any("response.cancel" in a.text for a in actions if isinstance(a, SendUpstream))
    assert any(
        "conversation.item.truncate" in a.text for a in actions if isinstance(a, SendUpstream)
    )


def test_no_truncate_when_everything_was_heard() -> None:
    """Speech after a finished response finished playing is not a barge-in at all."""
    core = ready_core()
    play_response(core, 5, 0.0)
    core.receive_realtime(rt.ResponseDone("resp_1", "completed", None, None, []), 10.0)
    assert core.receive_realtime(rt.SpeechStarted("u", 0), 10_000.0) == []
    assert core.stats.barge_ins == 0


def test_queued_audio_counts_as_pending() -> None:
    """Audio received but not yet written is interrupted too, truncated at what played."""
    core = ready_core()
    core.receive_realtime(rt.ResponseCreated("resp_1"), 0.0)
    pending = core.receive_realtime(rt.AudioDelta("resp_1", "item_1", DELTA), 0.0)
    assert isinstance(pending[0], Playback)
    actions = core.receive_realtime(rt.SpeechStarted("u", 0), 5.0)
    [truncate] = [a for a in actions if isinstance(a, SendUpstream)]
    assert json.loads(truncate.text)["audio_end_ms"] == 0
    # A queued chunk of the interrupted response is never written.
    assert core.render(pending[0], 6.0).messages == ()


def test_clear_echoes_are_ignored_and_unknown_marks_counted() -> None:
    """Echoes caused by clear do not move the estimate; stray names are counted."""
    core = ready_core()
    sent = [json.loads(t) for t in play_response(core, 5, 0.0)]
    names = [m["mark"]["name"] for m in sent if m["event"] == "mark"]
    core.receive_realtime(rt.SpeechStarted("u", 0), 100.0)
    for name in names:
        assert core.receive_twilio(tw.Mark(SID, name), 110.0) == []
    assert core.stats.ignored.get("unknown_mark", 0) == 0
    core.receive_twilio(tw.Mark(SID, "never-sent"), 120.0)
    assert core.stats.ignored["unknown_mark"] == 1


def test_usage_is_totalled() -> None:
    """Token usage of every response.done adds up."""
    core = ready_core()
    usage = {"total_tokens": 30, "input_tokens": 10, "output_tokens": 20}
    core.receive_realtime(rt.ResponseDone("r1", "completed", None, usage, []), 0.0)
    core.receive_realtime(rt.ResponseDone("r2", "completed", None, usage, []), 0.0)
    assert core.stats.tokens["total_tokens"] == 60


def test_upstream_errors_are_counted_and_survived() -> None:
    """An upstream error event is counted by code and does not end the call."""
    core = ready_core()
    err = rt.ErrorEvent("invalid_request_error", "response_cancel_not_active", "x", None, "vb_3")
    assert core.receive_realtime(err, 0.0) == []
    assert core.stats.upstream_errors["response_cancel_not_active"] == 1


def test_greeting_is_requested_once_after_the_session_is_confirmed() -> None:
    """With greeting instructions, the model is asked to speak first, once."""
    core = policy_core(greeting_instructions="Greet the caller.")
    [create] = core.receive_realtime(rt.SessionUpdated(session()), 0.0)
    assert isinstance(create, SendUpstream)
    event = json.loads(create.text)
    CLIENT_EVENT.validate_json(create.text)
    assert event["type"] == "response.create"
    assert event["response"]["instructions"] == "Greet the caller."
    assert core.receive_realtime(rt.SessionUpdated(session()), 1.0) == []


def test_failed_responses_retry_then_apologise_then_give_up() -> None:
    """A failed response is retried, then the model apologises, then the call ends."""
    core = policy_core(apology_instructions="Say sorry.")
    failed = rt.ResponseDone("r", "failed", {"type": "failed"}, None, [])
    [retry] = core.receive_realtime(failed, 0.0)
    assert isinstance(retry, SendUpstream)
    assert "instructions" not in json.loads(retry.text)["response"]  # the server's own response
    [apology] = core.receive_realtime(failed, 1.0)
    assert isinstance(apology, SendUpstream)
    assert json.loads(apology.text)["response"]["instructions"] == "Say sorry."
    [end] = core.receive_realtime(failed, 2.0)
    assert isinstance(end, EndCall) and end.failed
    assert core.stats.failed_responses == 3


def test_a_completed_response_resets_the_failure_count() -> None:
    """Failures separated by a good response are each retried."""
    core = policy_core()
    failed = rt.ResponseDone("r", "failed", None, None, [])
    ok = rt.ResponseDone("r2", "completed", None, None, [])
    for _ in range(3):
        [retry] = core.receive_realtime(failed, 0.0)
        assert "response.create" in retry.text and "instructions" not in retry.text  # type: ignore[union-attr]
        core.receive_realtime(ok, 0.0)


def test_incomplete_responses_are_counted() -> None:
    """An incomplete response is counted, not retried."""
    core = policy_core()
    details = {"type": "incomplete", "reason": "max_output_tokens"}
    assert core.receive_realtime(rt.ResponseDone("r", "incomplete", details, None, []), 0.0) == []
    assert core.stats.incomplete_responses == 1


def test_idle_caller_is_reprompted_then_hung_up() -> None:
    """The server re-prompts on each idle timeout; past the limit its next re-prompt is
    replaced by a goodbye and the call is closed (tests/unit/test_call_continuity.py)."""
    core = policy_core(idle_reprompts=2)
    assert core.receive_realtime(rt.TimeoutTriggered("i1"), 0.0) == []
    core.receive_realtime(rt.SpeechStarted("u", 0), 1.0)  # the caller answered: reset
    assert core.receive_realtime(rt.TimeoutTriggered("i2"), 2.0) == []
    assert core.receive_realtime(rt.TimeoutTriggered("i3"), 3.0) == []
    assert core.receive_realtime(rt.TimeoutTriggered("i4"), 4.0) == []
    [end] = core.receive_realtime(rt.ResponseCreated("r"), 5.0)
    assert end == ClosingStarted("idle_caller") and core.closing == "idle_caller"
    assert core.stats.idle_reprompts == 3


def test_media_gap_feeds_silence_in_the_session_format() -> None:
    """During a media gap the upstream gets 20 ms of silence per frame, counted."""
    core = policy_core()
    [frame] = core.media_gap()
    assert isinstance(frame, SendUpstream) and frame.audio
    audio = base64.b64decode(json.loads(frame.text)["audio"])
    assert audio == b"\xff" * 160
    pcm = CallCore(
        rt.SessionConfig(
            instructions="", voice="marin", input_format="audio/pcm", output_format="audio/pcm"
        )
    )
    assert pcm.media_gap() == []  # not streaming yet
    pcm.receive_twilio(start_event(), 0.0)
    [frame] = pcm.media_gap()
    assert isinstance(frame, SendUpstream)
    assert len(base64.b64decode(json.loads(frame.text)["audio"])) == pytest.approx(960, abs=6)
    assert core.stats.silence_frames == 1


def test_pcm_session_converts_both_ways_and_counts_ms_as_heard() -> None:
    """With audio/pcm, caller audio goes up as 24 kHz PCM and model audio comes down as μ-law."""
    core = CallCore(
        rt.SessionConfig(
            instructions="", voice="marin", input_format="audio/pcm", output_format="audio/pcm"
        )
    )
    core.receive_twilio(start_event(), 0.0)
    pcm_session = session(out="audio/pcm")
    pcm_session["audio"]["input"]["format"] = {"type": "audio/pcm", "rate": 24000}
    assert core.receive_realtime(rt.SessionUpdated(pcm_session), 0.0) == []
    [up] = core.receive_twilio(tw.Media(SID, 0, base64.b64encode(b"\x55" * 160).decode(), 1), 0.0)
    assert len(base64.b64decode(json.loads(up.text)["audio"])) == pytest.approx(960, abs=6)  # type: ignore[union-attr]
    delta = base64.b64encode(b"\x00\x10" * 2400).decode()  # 100 ms at 24 kHz
    [chunk] = core.receive_realtime(rt.AudioDelta("r", "i", delta), 0.0)
    assert isinstance(chunk, Playback)
    assert len(base64.b64decode(chunk.payload)) == pytest.approx(800, abs=3)
    assert chunk.ms == pytest.approx(100, abs=0.5)


def test_closing_cancels_the_active_response_then_asks_for_the_line() -> None:
    """One response at a time: cancel, then the line after response.done, then the end."""
    core = ready_core()
    core.receive_realtime(rt.ResponseCreated("r1"), 0.0)
    [cancel] = upstream(core.close("drain", "Say goodbye."))
    assert cancel["type"] == "response.cancel" and cancel["response_id"] == "r1"
    assert core.closing == "drain"
    assert core.close("session_cap", "Again.") == []  # once
    assert core.receive_realtime(rt.AudioDelta("r1", "i1", DELTA), 1.0) == []  # cut
    done = rt.ResponseDone("r1", "cancelled", None, None, [])
    [line] = upstream(core.receive_realtime(done, 2.0))
    assert line["response"]["instructions"] == "Say goodbye."
    core.receive_realtime(rt.ResponseCreated("r2", line["response"]["metadata"]), 3.0)
    assert not core.closing_finished(3.0)
    assert upstream(core.tool_result("c1", "ok")) == [  # no new response while closing
        {
            "type": "conversation.item.create",
            "event_id": "vb_3",
            "item": {"type": "function_call_output", "call_id": "c1", "output": "ok"},
        }
    ]
    core.receive_realtime(rt.ResponseDone("r2", "completed", None, None, []), 4.0)
    assert core.closing_finished(4.0)


def test_closing_without_a_line_waits_for_playback_and_echoes() -> None:
    """A goodbye already said: the end waits until Twilio confirmed playing it all."""
    core = ready_core()
    sent = [json.loads(t) for t in play_response(core, 5, 0.0)]  # 500 ms
    assert core.close("end_call", None) == []
    assert not core.closing_finished(100.0)
    assert not core.closing_finished(600.0)  # played, but the echoes are still due
    for m in sent:
        if m["event"] == "mark":
            core.receive_twilio(tw.Mark(SID, m["mark"]["name"]), 600.0)
    assert core.closing_finished(600.0)


def test_a_lost_session_is_resumed_with_the_call_so_far() -> None:
    """After a confirmed session is lost, the next one is re-seeded, then speaks."""
    core = policy_core(resume_instructions="We are back.")
    core.receive_realtime(rt.SessionUpdated(session()), 0.0)
    core.receive_realtime(rt.Transcribed("caller", "u1", "Hello"), 10.0)
    core.receive_realtime(rt.Transcribed("assistant", "a1", "Hi there"), 20.0)
    core.receive_realtime(rt.ResponseCreated("r1"), 30.0)
    core.new_session(announce=True)
    assert not core.session_ready and core.stats.reconnects == 1
    assert core.receive_realtime(rt.AudioDelta("r1", "a2", DELTA), 40.0) == []  # cut
    events = upstream(core.receive_realtime(rt.SessionUpdated(session()), 50.0))
    assert [e["type"] for e in events] == ["conversation.item.create"] * 3 + ["response.create"]
    assert events[0]["item"]["content"][0]["text"] == "Hello"
    assert events[2]["item"]["role"] == "system"  # carry on, no new greeting
    assert events[3]["response"]["instructions"] == "We are back."
    assert core.session_ready


def test_a_keypad_digit_is_answered_after_a_pause() -> None:
    """Digits go up as text; the model answers a second after the last, one at a time."""
    core = policy_core()
    core.receive_realtime(rt.SessionUpdated(session()), 0.0)
    [digit] = upstream(core.receive_twilio(tw.Dtmf(SID, "5"), 0.0))
    assert digit["item"]["content"][0]["text"] == "[keypad] 5"
    assert core.dtmf_pause(999.0) == []
    assert [e["type"] for e in upstream(core.dtmf_pause(1000.0))] == ["response.create"]
    assert core.dtmf_pause(3000.0) == []  # answered once
    core.receive_realtime(rt.ResponseCreated("r1"), 3000.0)
    core.receive_twilio(tw.Dtmf(SID, "6"), 3000.0)
    assert core.dtmf_pause(4000.0) == []  # r1 is active: the create waits for it
    done = core.receive_realtime(rt.ResponseDone("r1", "completed", None, None, []), 4500.0)
    assert [e["type"] for e in upstream(done)] == ["response.create"]
    assert core.stats.dtmf == 2


def test_the_model_answers_once_every_tool_reported() -> None:
    """Two function calls in one response: one response.create, after the second result."""
    core = ready_core()
    play_response(core, 1, 0.0, resp="r1")
    calls = [
        {"type": "function_call", "call_id": f"c{n}", "name": "lookup", "arguments": "{}"}
        for n in (1, 2)
    ]
    actions = core.receive_realtime(rt.ResponseDone("r1", "completed", None, None, calls), 1.0)
    assert [(a.call.call_id, a.spoke) for a in actions if isinstance(a, RunTool)] == [
        ("c1", True),
        ("c2", True),
    ]
    assert [e["type"] for e in upstream(core.tool_result("c1", "a"))] == [
        "conversation.item.create"
    ]
    assert [e["type"] for e in upstream(core.tool_result("c2", "b"))] == [
        "conversation.item.create",
        "response.create",
    ]


def test_latency_samples_ride_on_rendered_audio() -> None:
    """First audio is timed from start, response latency from the caller's end of speech."""
    core = ready_core()
    core.receive_realtime(rt.SpeechStopped("u", 0), 400.0)
    core.receive_realtime(rt.ResponseCreated("r1"), 500.0)
    [chunk] = core.receive_realtime(rt.AudioDelta("r1", "i1", DELTA), 500.0)
    assert isinstance(chunk, Playback)
    assert core.render(chunk, 700.0).timings == (
        Timing("first_audio", 700.0),
        Timing("response_latency", 300.0),
    )
    [chunk] = core.receive_realtime(rt.AudioDelta("r1", "i1", DELTA), 710.0)
    assert isinstance(chunk, Playback)
    assert core.render(chunk, 720.0).timings == ()


def test_a_truncated_items_transcript_is_marked_interrupted() -> None:
    """The assistant's text of a cut item says it was interrupted."""
    core = ready_core()
    play_response(core, 10, 0.0)
    core.receive_realtime(rt.SpeechStarted("u", 0), 300.0)
    core.receive_realtime(rt.Transcribed("assistant", "item_1", "A long answer"), 400.0)
    [turn] = core.transcript.turns
    assert turn.interrupted and turn.at_ms == 400.0
