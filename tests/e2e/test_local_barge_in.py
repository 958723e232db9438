"""Local barge-in through real sockets: a cough over an answer costs the caller nothing."""

from __future__ import annotations

import dataclasses

from tests.support.metrics import scrape
from tests.support.servers import running_bridge, running_fake
from tests.support.waiting import wait_until
from voicebridge.config import Settings
from voicebridge.fake_realtime.server import FakeRealtimeOptions
from voicebridge.twilio_sim.call_report import Network
from voicebridge.twilio_sim.line_sounds import CallerSounds, cough
from voicebridge.twilio_sim.recordings import Recording, packaged_call
from voicebridge.twilio_sim.stream import EmulatedCall
from voicebridge.twilio_sim.webhook_client import call_params, new_sid, post_webhook

# A distant upstream (events 80 ms late, 200 ms of speech before speech_started) saying a
# 3 s answer (the fake's clip 05), over a realistic caller path.
DISTANT = FakeRealtimeOptions(event_delay_ms=80, vad_start_ms=200, first_clip=4)
PATH = Network(down_ms=60, up_ms=60, jitter_ms=20, playout_ms=60, seed=18)


def question_then_quiet() -> Recording:
    """The caller's question (books_a_table's first turn), then that call's line noise."""
    p = packaged_call("books_a_table").payloads
    media = p[34:253] + p[300:520] + p[300:480]
    return Recording(
        "question",
        (
            {"event": "connected", "protocol": "Call", "version": "1.0.0"},
            {"event": "start", "sequenceNumber": "1", "start": {"tracks": ["inbound"]}},
            *(
                {"event": "media", "media": {"timestamp": str(i * 20), "payload": payload}}
                for i, payload in enumerate(media)
            ),
            {"event": "stop"},
        ),
    )


async def test_a_cough_800_ms_into_an_answer_is_paused_and_resumed(settings: Settings) -> None:
    """LOCAL_BARGE_IN=on, a 150 ms cough 800 ms into a 3 s answer: Twilio is cleared at
    once, nothing is truncated, the answer resumes within the window plus 100 ms, and the
    caller hears all of it (at least 2.9 s); /metrics counts one false interruption."""
    with running_fake(DISTANT) as (fake, _):
        wired = dataclasses.replace(settings, realtime_url=fake.url, caller_burst_ms=2000)
        with running_bridge(wired, local_barge_in=True) as bridge:
            call_sid, account_sid = new_sid("CA"), new_sid("AC")
            params = call_params(call_sid, account_sid, from_="+15005550006", to="+15005550001")
            answer = await post_webhook(bridge.webhook, params)
            assert answer.twiml is not None and answer.twiml.stream_url is not None
            line = CallerSounds(cough=cough(150, rms=3000, seed=18), cough_at_ms=800)
            report = await EmulatedCall(
                answer.twiml.stream_url,
                question_then_quiet(),
                parameters=answer.twiml.parameters,
                network=PATH,
                call_sid=call_sid,
                account_sid=account_sid,
                line=line,
            ).run(60.0)
            await wait_until(lambda: fake.active == 0)
            metrics = scrape(bridge)
        [session] = fake.sessions
    assert "cough" in line.inserted_at
    [cleared] = report.player.clears
    assert 0 < cleared - line.inserted_at["cough"] < 300  # paused as the cough went on
    resumed = min(c.start for c in report.player.chunks if c.arrived > cleared)
    assert resumed - cleared < settings.local_barge_in_window_ms + 100
    assert sum(c.played for c in report.player.chunks) >= 2900
    assert session.truncations == [] and not session.errors_sent
    assert metrics["voicebridge_false_interruptions_total"] == 1
    assert metrics["voicebridge_local_pauses_total"] == 1
    assert report.violations == []
