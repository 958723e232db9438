"""The fake Realtime server, driven through real sockets, speaks the GA protocol faithfully."""

from __future__ import annotations

import array
import asyncio
import base64
import itertools
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pydantic
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.audio import LOUD, SILENT, b64
from tests.support.conformance import SERVER_EVENT
from tests.support.realtime_client import GA_PCMU, Client, open_client
from voicebridge.fake_realtime.clips import clip_chunks, load_clips, reprompt_clip
from voicebridge.fake_realtime.server import FakeRealtimeOptions, FakeRealtimeServer, FakeSession

MS = 0.001  # seconds

# Fields the real server sends that the SDK's RealtimeSessionCreateRequest does not declare
# (they are declared on RealtimeSessionCreateResponse).
ALLOWED_EXTRAS = {"session.id", "session.object", "session.expires_at"}


def unknown_fields(value: Any, path: str = "") -> list[str]:
    """Fields the openai models accepted only as extras (their BaseModel allows any extra key)."""
    found: list[str] = []
    if isinstance(value, pydantic.BaseModel):
        found += [f"{path}{key}" for key in value.model_extra or {}]
        for name in type(value).model_fields:
            found += unknown_fields(getattr(value, name), f"{path}{name}.")
    elif isinstance(value, list):
        for element in value:
            found += unknown_fields(element, path)
    return found


def assert_conforms(sessions: list[FakeSession]) -> int:
    """Every sent event validates as a GA RealtimeServerEvent with no undeclared fields."""
    count = 0
    for session in sessions:
        for event in session.sent:
            model = SERVER_EVENT.validate_python(event)
            assert model.type == event["type"]
            extras = set(unknown_fields(model)) - ALLOWED_EXTRAS
            assert not extras, (event["type"], extras)
            count += 1
    return count


MakeFake = Callable[..., Awaitable[FakeRealtimeServer]]


@pytest.fixture
async def make_fake() -> AsyncIterator[MakeFake]:
    """Start fakes on free ports; on teardown close them and check every event they sent."""
    servers: list[FakeRealtimeServer] = []

    async def make(**options: Any) -> FakeRealtimeServer:
        server = FakeRealtimeServer(
            FakeRealtimeOptions(**{"speed": 50.0, "response_delay_ms": 10, **options})
        )
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.close()
    assert_conforms([s for server in servers for s in server.sessions])


async def run_response(client: Client) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Ask for a response; return its audio deltas and its response.done."""
    await client.send(
        {"type": "response.create", "response": {"instructions": "Greet the caller."}}
    )
    done, before = await client.until("response.done")
    return [e for e in before if e["type"] == "response.output_audio.delta"], done


def delta_ms_ulaw(deltas: list[dict[str, Any]]) -> float:
    return sum(len(base64.b64decode(e["delta"])) for e in deltas) / 8


async def test_session_created_then_ga_update_is_echoed(make_fake: MakeFake) -> None:
    """session.created carries the real defaults; a GA pcmu update comes back as session.updated."""
    fake = await make_fake()
    async with await connect(fake.url + "?model=gpt-realtime-2.1") as ws:
        client = Client(ws)
        created = await client.recv()
        session = created["session"]
        assert created["type"] == "session.created" and created["event_id"].startswith("event_")
        assert session["type"] == "realtime" and session["object"] == "realtime.session"
        assert session["id"].startswith("sess_") and session["model"] == "gpt-realtime-2.1"
        assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
        assert session["audio"]["output"] == {
            "format": {"type": "audio/pcm", "rate": 24000},
            "voice": "marin",
            "speed": 1.0,
        }
        assert session["audio"]["input"]["turn_detection"] == {
            "type": "server_vad",
            "threshold": 0.5,
            "prefix_padding_ms": 300,
            "silence_duration_ms": 500,
            "idle_timeout_ms": None,
            "create_response": True,
            "interrupt_response": True,
        }
        assert session["output_modalities"] == ["audio"]

        await client.send({"type": "session.update", "event_id": "upd_1", "session": GA_PCMU})
        updated, _ = await client.until("session.updated")
        assert updated["event_id"] != "upd_1"  # the client event_id is not echoed
        audio = updated["session"]["audio"]
        assert audio["input"]["format"] == {"type": "audio/pcmu"}
        assert audio["output"]["format"] == {"type": "audio/pcmu"}
        # Merged into the defaults, not replaced by the update.
        assert audio["input"]["turn_detection"]["silence_duration_ms"] == 500
        assert updated["session"]["id"] == session["id"]
    record = fake.sessions[0]
    assert record.model == "gpt-realtime-2.1" and record.path.startswith("/v1/realtime?")
    assert [e["type"] for e in record.received] == ["session.update"]


async def test_appended_payloads_are_recorded_untouched(make_fake: MakeFake) -> None:
    """The fake keeps every append's base64 exactly as sent, in order."""
    fake = await make_fake()
    payloads = [b64(LOUD), b64(SILENT), b64(bytes(range(7))), b64(b"\x7f" * 333)]
    async with await open_client(fake) as client:
        await client.update(GA_PCMU)
        for payload in payloads:
            await client.send({"type": "input_audio_buffer.append", "audio": payload})
        await client.sync()
    assert fake.sessions[0].appended == payloads


async def test_loud_run_triggers_vad_and_a_complete_response(make_fake: MakeFake) -> None:
    """Speech then silence: started/stopped on the input timeline, then a whole spoken reply."""
    fake = await make_fake(delta_ms=100)
    async with await open_client(fake) as client:
        await client.update(GA_PCMU)
        # 500 ms silence, 400 ms speech, 600 ms silence.
        await client.append([SILENT] * 25 + [LOUD] * 20 + [SILENT] * 30)
        started, _ = await client.until("input_audio_buffer.speech_started")
        # The start of the voiced run minus prefix_padding_ms.
        assert started["audio_start_ms"] == 500 - 300
        stopped, _ = await client.until("input_audio_buffer.speech_stopped")
        assert stopped["audio_end_ms"] == 500 + 400 + 500  # includes silence_duration_ms
        assert stopped["item_id"] == started["item_id"]
        done, events = await client.until("response.done")

    kinds = [e["type"] for e in events]
    deltas = [e for e in events if e["type"] == "response.output_audio.delta"]
    words = [e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta"]
    head = [k for k in kinds if not k.startswith("response.output_audio")]
    assert head == [
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "response.created",
        "rate_limits.updated",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
    ]
    assert kinds[-5:-3] == ["response.output_audio.done", "response.output_audio_transcript.done"]
    user_item = events[1]["item"]
    assert user_item["id"] == stopped["item_id"] and user_item["role"] == "user"
    assert user_item["content"] == [{"type": "input_audio", "transcript": None}]

    sizes = [len(base64.b64decode(e["delta"])) for e in deltas]
    assert len(deltas) >= 15  # clips are 1.5-4 s
    assert all(size == 800 for size in sizes[:-1]) and 0 < sizes[-1] <= 800  # pcmu, 100 ms each
    assert len({e["item_id"] for e in deltas}) == 1

    response = done["response"]
    assert response["status"] == "completed" and response["status_details"] is None
    (item,) = response["output"]
    transcript = item["content"][0]["transcript"]
    assert transcript == "".join(words) and len(transcript.split()) >= 4
    assert item["role"] == "assistant" and item["status"] == "completed"
    usage = response["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0
    assert {"input_token_details", "output_token_details"} <= usage.keys()

    record = fake.sessions[0].items[item["id"]]
    assert record.deltas == [e["delta"] for e in deltas]
    assert record.audio_ms_sent == pytest.approx(delta_ms_ulaw(deltas))
    assert record.response_id == response["id"]


async def test_cancel_without_active_response_is_an_error(make_fake: MakeFake) -> None:
    """response.cancel with nothing running is response_cancel_not_active; the session lives on."""
    fake = await make_fake()
    async with await open_client(fake) as client:
        await client.send({"type": "response.cancel", "event_id": "cancel_1"})
        error, _ = await client.until("error")
        assert error["error"] == {
            "type": "invalid_request_error",
            "code": "response_cancel_not_active",
            "message": "Cancellation failed: no active response found",
            "param": None,
            "event_id": "cancel_1",
        }
        await client.update(GA_PCMU)
    assert fake.sessions[0].errors_sent == [error]


async def test_second_response_create_while_active_is_refused(make_fake: MakeFake) -> None:
    """Only one response at a time; response.cancel then ends the first as client_cancelled."""
    fake = await make_fake(speed=20.0)
    async with await open_client(fake) as client:
        await client.update(GA_PCMU)
        await client.send({"type": "response.create"})
        await client.send({"type": "response.create", "event_id": "again"})
        await client.send({"type": "response.cancel"})
        created, _ = await client.until("response.created")
        error, _ = await client.until("error")
        resp_id = created["response"]["id"]
        assert resp_id.startswith("resp_")
        assert error["error"]["code"] == "conversation_already_has_active_response"
        assert error["error"]["message"] == (
            f"Conversation already has an active response in progress: {resp_id}. "
            "Wait until the response is finished before creating a new one."
        )
        assert error["error"]["event_id"] == "again"
        done, _ = await client.until("response.done")
        assert done["response"]["id"] == resp_id
        assert done["response"]["status"] == "cancelled"
        assert done["response"]["status_details"] == {
            "type": "cancelled",
            "reason": "client_cancelled",
        }


async def test_response_metadata_is_echoed_and_checked(make_fake: MakeFake) -> None:
    """response.create's metadata comes back on response.created and .done; a value that is
    not string pairs is refused with invalid_value."""
    fake = await make_fake(speed=20.0)
    async with await open_client(fake) as client:
        await client.update(GA_PCMU)
        await client.send({"type": "response.create", "response": {"metadata": {"vb": "e1"}}})
        created, _ = await client.until("response.created")
        done, _ = await client.until("response.done")
        assert created["response"]["metadata"] == done["response"]["metadata"] == {"vb": "e1"}
        bad = {"type": "response.create", "event_id": "m2", "response": {"metadata": {"vb": 1}}}
        await client.send(bad, check=False)
        error, _ = await client.until("error")
        assert (error["error"]["code"], error["error"]["param"]) == (
            "invalid_value",
            "response.metadata",
        )


async def test_a_response_can_pause_midway_still_in_progress(make_fake: MakeFake) -> None:
    """pause_midway_ms: half the audio, then nothing for that long, then the rest."""
    fake = await make_fake(speed=20.0, pause_midway_ms=400)
    async with await open_client(fake) as client:
        await client.update(GA_PCMU)
        await client.send({"type": "response.create"})
        times = []
        while (event := await client.recv())["type"] != "response.done":
            if event["type"] == "response.output_audio.delta":
                times.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert max(gaps) >= 0.4 and gaps.index(max(gaps)) == len(times) // 2 - 1
    assert sorted(gaps)[-2] < 0.2  # the pause is the only one


async def test_truncate_past_the_audio_is_invalid_value(make_fake: MakeFake) -> None:
    """Truncating beyond the audio produced gets the exact error the real server sends."""
    fake = await make_fake()
    async with await open_client(fake) as client:
        await client.update(GA_PCMU)
        deltas, done = await run_response(client)
        item_id = done["response"]["output"][0]["id"]
        have = int(delta_ms_ulaw(deltas))
        await client.send(
            {
                "type": "conversation.item.truncate",
                "event_id": "tr_1",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": have + 250,
            }
        )
        error, _ = await client.until("error")
        assert error["error"] == {
            "type": "invalid_request_error",
            "code": "invalid_value",
            "message": f"Audio content of {have}ms is already shorter than {have + 250}ms",
            "param": "audio_end_ms",
            "event_id": "tr_1",
        }
        await client.send(
            {
                "type": "conversation.item.truncate",
                "item_id": "item_nope",
                "content_index": 0,
                "audio_end_ms": 0,
            }
        )
        error, _ = await client.until("error")
        assert error["error"]["message"] == "Item with item_id not found: item_nope"
        await client.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "hi"}],
                },
            }
        )
        added, _ = await client.until("conversation.item.done")
        await client.send(
            {
                "type": "conversation.item.truncate",
                "item_id": added["item"]["id"],
                "content_index": 0,
                "audio_end_ms": 0,
            }
        )
        error, _ = await client.until("error")
        assert error["error"]["message"] == "Only model output audio messages can be truncated"
    record = fake.sessions[0]
    assert len(record.truncations) == 3 and record.truncated == []
    assert int(record.items[item_id].audio_ms_sent) == have


async def test_truncate_within_the_audio_succeeds_and_stops_an_active_item(
    make_fake: MakeFake,
) -> None:
    """conversation.item.truncated comes back; truncating a live item ends its audio."""
    fake = await make_fake(speed=20.0, delta_ms=100)
    async with await open_client(fake) as client:
        await client.update(GA_PCMU)
        await client.send({"type": "response.create"})
        first, _ = await client.until("response.output_audio.delta")
        item_id = first["item_id"]
        await client.send(
            {
                "type": "conversation.item.truncate",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": 60,
            }
        )
        truncated, _ = await client.until("conversation.item.truncated")
        assert {k: truncated[k] for k in ("item_id", "content_index", "audio_end_ms")} == {
            "item_id": item_id,
            "content_index": 0,
            "audio_end_ms": 60,
        }
        done, after = await client.until("response.done")
        assert not [e for e in after if e["type"] == "response.output_audio.delta"]
        assert done["response"]["output"][0]["content"][0]["transcript"] == ""  # transcript deleted
        sent_ms = fake.sessions[0].items[item_id].audio_ms_sent
        assert 100 <= sent_ms < load_clips()[0].duration_ms - 200  # the clip was cut short
        await client.send(
            {
                "type": "conversation.item.truncate",
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": 40,
            }
        )
        again, _ = await client.until("conversation.item.truncated")
        assert again["audio_end_ms"] == 40
    assert [t["audio_end_ms"] for t in fake.sessions[0].truncated] == [60, 40]


async def test_speech_during_a_response_cancels_it_as_turn_detected(make_fake: MakeFake) -> None:
    """With interrupt_response, speech_started ends the response: no more deltas, cancelled."""
    fake = await make_fake(speed=20.0)
    async with await open_client(fake) as client:
        await client.update(GA_PCMU)
        await client.send({"type": "response.create"})
        first, _ = await client.until("response.output_audio.delta")
        await client.append([LOUD] * 4)
        started, _ = await client.until("input_audio_buffer.speech_started")
        done, between = await client.until("response.done")
        closing = [
            e["type"] for e in between if e["type"] != "response.output_audio_transcript.delta"
        ]
        assert closing == [
            "response.output_audio.done",
            "response.output_audio_transcript.done",
            "response.content_part.done",
            "response.output_item.done",
            "conversation.item.done",
        ]
        assert done["response"]["status"] == "cancelled"
        assert done["response"]["status_details"] == {
            "type": "cancelled",
            "reason": "turn_detected",
        }
        assert done["response"]["output"][0]["status"] == "incomplete"
        await asyncio.sleep(100 * MS)  # twenty delta intervals at speed 20
        later = await client.sync()
        assert not [e for e in later if e["type"] == "response.output_audio.delta"]
    item = fake.sessions[0].items[first["item_id"]]
    received = [e for e in client.events if e["type"] == "response.output_audio.delta"]
    assert len(item.deltas) == len(received)
    assert item.audio_ms_sent < load_clips()[0].duration_ms - 200


async def test_beta_header_gets_error_then_close_4000(make_fake: MakeFake) -> None:
    """The retired `OpenAI-Beta: realtime=v1` gets beta_api_shape_disabled, then close 4000."""
    fake = await make_fake()
    async with connect(
        fake.url + "?model=gpt-realtime", additional_headers={"OpenAI-Beta": "realtime=v1"}
    ) as ws:
        client = Client(ws)
        error = await client.recv()
        assert error["type"] == "error"
        assert error["error"]["type"] == "invalid_request_error"
        assert error["error"]["code"] == "beta_api_shape_disabled"
        assert error["error"]["message"] == (
            "The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API."
        )
        with pytest.raises(ConnectionClosed) as closed:
            await client.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
    assert fake.sessions[0].headers["openai-beta"] == "realtime=v1"


async def test_handshake_checks_api_key_and_path(make_fake: MakeFake) -> None:
    """A wrong or missing key is refused with 401, a wrong path with 404; the right key works."""
    fake = await make_fake(api_key="sk-test")
    for headers in ({"Authorization": "Bearer sk-wrong"}, {}):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(fake.url, additional_headers=headers):
                pass
        assert refused.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as missing:
        async with connect(
            fake.url.replace("/v1/realtime", "/v1/other"),
            additional_headers={"Authorization": "Bearer sk-test"},
        ):
            pass
    assert missing.value.response.status_code == 404
    assert fake.connections_total == 0
    async with await open_client(fake, additional_headers={"Authorization": "Bearer sk-test"}):
        assert fake.connections_total == 1 and fake.active == 1
    assert fake.sessions[0].headers["authorization"] == "Bearer sk-test"


async def test_pcm_output_is_pcm16_24khz(make_fake: MakeFake) -> None:
    """With audio/pcm output, deltas are PCM16 at 24 kHz: 48 bytes per ms."""
    fake = await make_fake(delta_ms=80)
    async with await open_client(fake) as client:
        updated = await client.update(
            {
                "type": "realtime",
                "audio": {"output": {"format": {"type": "audio/pcm", "rate": 24000}}},
            }
        )
        assert updated["session"]["audio"]["output"]["format"] == {
            "type": "audio/pcm",
            "rate": 24000,
        }
        deltas, done = await run_response(client)
    sizes = [len(base64.b64decode(e["delta"])) for e in deltas]
    assert all(size == 48 * 80 for size in sizes[:-1]) and sizes[-1] <= 48 * 80
    item = fake.sessions[0].items[done["response"]["output"][0]["id"]]
    assert item.audio_ms_sent == pytest.approx(sum(sizes) / 48)
    assert done["response"]["audio"]["output"]["format"]["type"] == "audio/pcm"


async def test_speech_needs_vad_start_ms_of_voiced_audio(make_fake: MakeFake) -> None:
    """A 40 ms blip is not speech with vad_start_ms=60; 60 ms of voiced frames is."""
    fake = await make_fake(vad_start_ms=60)
    async with await open_client(fake) as client:
        td = {"type": "server_vad", "prefix_padding_ms": 100}
        pcmu = {"type": "audio/pcmu"}
        await client.update(
            {"type": "realtime", "audio": {"input": {"format": pcmu, "turn_detection": td}}}
        )
        await client.append([LOUD] * 2 + [SILENT] * 5)
        assert not [e for e in await client.sync() if e["type"].startswith("input_audio_buffer.")]
        await client.append([LOUD] * 3)
        started, _ = await client.until("input_audio_buffer.speech_started")
    assert started["audio_start_ms"] == 140 - 100  # the voiced run began at 140 ms


async def test_accept_delay_slows_the_handshake(make_fake: MakeFake) -> None:
    """accept_delay_ms holds the handshake back that long."""
    fake = await make_fake(accept_delay_ms=200)
    began = time.monotonic()
    async with await open_client(fake):
        assert time.monotonic() - began >= 190 * MS


async def test_pcm_input_vad_reads_pcm16_24khz(make_fake: MakeFake) -> None:
    """With audio/pcm input, VAD decodes PCM16 at 24 kHz and times it at 48 bytes per ms."""
    fake = await make_fake()
    tone = array.array(
        "h", (int(12000 * math.sin(2 * math.pi * 440 * i / 24000)) for i in range(480))
    ).tobytes()
    quiet = bytes(960)
    async with await open_client(fake) as client:
        session = {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm"}}}}
        await client.update(session)
        await client.append([quiet] * 20 + [tone] * 15 + [quiet] * 26)
        started, _ = await client.until("input_audio_buffer.speech_started")
        stopped, _ = await client.until("input_audio_buffer.speech_stopped")
    assert started["audio_start_ms"] == 400 - 300
    assert stopped["audio_end_ms"] == 400 + 300 + 500


async def test_echo_output_format_fault_reports_another_format(make_fake: MakeFake) -> None:
    """The echo_output_format fault makes session.updated disagree with what was asked."""
    fake = await make_fake(echo_output_format="audio/pcm")
    async with await open_client(fake) as client:
        updated = await client.update(GA_PCMU)
    assert updated["session"]["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert updated["session"]["audio"]["input"]["format"] == {"type": "audio/pcmu"}


async def test_close_after_ms_closes_with_1011(make_fake: MakeFake) -> None:
    """The close_after_ms fault closes the socket with 1011 that long after session.update."""
    fake = await make_fake(close_after_ms=150)
    async with await open_client(fake) as client:
        await client.update(GA_PCMU)
        updated_at = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await client.recv()
        assert time.monotonic() - updated_at >= 140 * MS
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
    await fake.close()  # waits for the connection handler to finish its record
    assert fake.sessions[0].close_code == 1011 and fake.sessions[0].closed_at is not None


async def test_bad_input_gets_errors_and_the_session_stays_open(make_fake: MakeFake) -> None:
    """Non-JSON, unknown types and beta-shaped updates are answered with errors, not a close."""
    fake = await make_fake()
    async with await open_client(fake) as client:
        await client.ws.send("{not json")
        error, _ = await client.until("error")
        assert error["error"]["code"] == "invalid_json"
        await client.send({"type": "response.audio.delta", "event_id": "u1"}, check=False)
        error, _ = await client.until("error")
        assert (error["error"]["code"], error["error"]["param"]) == ("invalid_value", "type")
        await client.send(
            {
                "type": "session.update",
                "session": {"modalities": ["audio"], "input_audio_format": "g711_ulaw"},
            },
            check=False,
        )
        error, _ = await client.until("error")
        assert error["error"]["type"] == "invalid_request_error"
        assert error["error"]["param"] == "session.modalities"
        await client.send(
            {"type": "session.update", "session": {"instructions": "hi"}}, check=False
        )
        error, _ = await client.until("error")
        assert error["error"]["param"] == "session.type"
        updated = await client.update(GA_PCMU)
        assert updated["session"]["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert len(fake.sessions[0].errors_sent) == 4


async def test_turn_detection_null_and_semantic_vad(make_fake: MakeFake) -> None:
    """No VAD events without turn detection; semantic_vad stops after a fixed 500 ms of silence."""
    fake = await make_fake()
    async with await open_client(fake) as client:
        off = {
            "type": "realtime",
            "audio": {"input": {"format": {"type": "audio/pcmu"}, "turn_detection": None}},
        }
        updated = await client.update(off)
        assert updated["session"]["audio"]["input"]["turn_detection"] is None
        await client.append([LOUD] * 20 + [SILENT] * 30)  # 1000 ms of input timeline
        assert not [e for e in await client.sync() if e["type"].startswith("input_audio_buffer.")]
        await client.send({"type": "input_audio_buffer.commit"})
        committed, _ = await client.until("input_audio_buffer.committed")
        await client.until("conversation.item.done")

        semantic = {
            "type": "realtime",
            "audio": {"input": {"turn_detection": {"type": "semantic_vad"}}},
        }
        updated = await client.update(semantic)
        assert updated["session"]["audio"]["input"]["turn_detection"]["type"] == "semantic_vad"
        assert "threshold" not in updated["session"]["audio"]["input"]["turn_detection"]
        await client.append([LOUD] * 10 + [SILENT] * 25)
        started, _ = await client.until("input_audio_buffer.speech_started")
        stopped, _ = await client.until("input_audio_buffer.speech_stopped")
        assert started["audio_start_ms"] == 1000 - 300
        assert stopped["audio_end_ms"] == 1000 + 200 + 500
        previous = await client.until("input_audio_buffer.committed")
        assert previous[0]["previous_item_id"] == committed["item_id"]
        await client.until("response.done")


async def test_close_is_prompt_with_clients_connected(make_fake: MakeFake) -> None:
    """close() ends open connections (1001) and the listener in well under a second."""
    fake = await make_fake()
    client = await open_client(fake)
    await client.update(GA_PCMU)
    await client.send({"type": "response.create"})
    await client.until("response.created")
    started = time.monotonic()
    await fake.close()
    assert time.monotonic() - started < 1.0
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await client.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    assert fake.active == 0 and fake.sessions[0].close_code == 1001


async def test_every_event_kind_validates_against_the_openai_types(make_fake: MakeFake) -> None:
    """One session touching every path the fake has; each sent event is a valid GA server event."""
    fake = await make_fake(speed=20.0)
    async with await open_client(fake) as client:
        await client.update(GA_PCMU)
        await client.append([LOUD] * 10 + [SILENT] * 26)
        first, _ = await client.until("response.output_audio.delta")
        await client.append([LOUD] * 4)  # barge-in
        await client.until("response.done")
        await client.send(
            {
                "type": "conversation.item.truncate",
                "item_id": first["item_id"],
                "content_index": 0,
                "audio_end_ms": 50,
            }
        )
        await client.until("conversation.item.truncated")
        await client.append([SILENT] * 26)
        await client.until("input_audio_buffer.speech_stopped")
        await client.until("response.done")
        await client.send(
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "function_call_output",
                    "call_id": "call_1",
                    "output": '{"ok": true}',
                },
            }
        )
        added, _ = await client.until("conversation.item.done")
        await client.send({"type": "conversation.item.retrieve", "item_id": added["item"]["id"]})
        await client.until("conversation.item.retrieved")
        await client.send({"type": "conversation.item.delete", "item_id": added["item"]["id"]})
        await client.until("conversation.item.deleted")
        await client.send({"type": "input_audio_buffer.clear"})
        await client.until("input_audio_buffer.cleared")
        await client.send({"type": "input_audio_buffer.commit"})
        await client.until("error")  # buffer too small
        await client.update(
            {"type": "realtime", "audio": {"output": {"format": {"type": "audio/pcma"}}}}
        )
        await client.send({"type": "response.create"})
        await client.send({"type": "response.cancel"})
        await client.until("response.done")
        await client.sync()

    kinds = {e["type"] for e in fake.sessions[0].sent}
    assert kinds >= {
        "session.created",
        "session.updated",
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "input_audio_buffer.cleared",
        "conversation.item.added",
        "conversation.item.done",
        "conversation.item.truncated",
        "conversation.item.retrieved",
        "conversation.item.deleted",
        "response.created",
        "rate_limits.updated",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_audio.delta",
        "response.output_audio_transcript.delta",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.done",
        "error",
    }
    assert assert_conforms(fake.sessions) == len(fake.sessions[0].sent) > 50
    ids = [e["event_id"] for e in fake.sessions[0].sent]
    assert len(set(ids)) == len(ids)


# -- idle timeout, faults, transcription, validation, semantic VAD, tool calls -------------


def pcmu_session(**input_fields: Any) -> dict[str, Any]:
    """GA pcmu in and out, plus the given audio.input fields."""
    fmt = {"type": "audio/pcmu"}
    return {
        "type": "realtime",
        "audio": {"input": {"format": fmt, **input_fields}, "output": {"format": fmt}},
    }


def kinds_of(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


async def test_idle_timeout_reprompts_after_playback_and_rearms(make_fake: MakeFake) -> None:
    """idle_timeout_ms counts appended audio from response.done + the reply's audio length."""
    fake = await make_fake()
    td = {"type": "server_vad", "idle_timeout_ms": 1000}
    async with await open_client(fake) as client:
        updated = await client.update(
            pcmu_session(turn_detection=td, transcription={"model": "gpt-transcribe"})
        )
        assert updated["session"]["audio"]["input"]["turn_detection"]["idle_timeout_ms"] == 1000
        _, done = await run_response(client)  # nothing appended yet: response.done is at 0 ms
        played = fake.sessions[0].items[done["response"]["output"][0]["id"]].audio_ms_sent
        frames = math.ceil((played + 1000) / 20)  # 20 ms silent frames until the deadline
        await client.append([SILENT] * (frames - 1))
        assert "input_audio_buffer.timeout_triggered" not in kinds_of(await client.sync())
        await client.append([SILENT])
        timeout, _ = await client.until("input_audio_buffer.timeout_triggered")
        assert timeout["audio_start_ms"] == int(played)  # playback of the reply ended here
        assert timeout["audio_end_ms"] == frames * 20
        reprompt, events = await client.until("response.done")
        assert kinds_of(events)[:4] == [
            "input_audio_buffer.committed",
            "conversation.item.added",
            "conversation.item.done",
            "response.created",
        ]
        assert events[0]["item_id"] == timeout["item_id"]
        user_item = events[2]["item"]
        assert user_item["id"] == timeout["item_id"] and user_item["role"] == "user"
        # An empty input: no transcription, although transcription is on.
        assert not [e for e in events if "input_audio_transcription" in e["type"]]
        reply = reprompt["response"]["output"][0]["content"][0]["transcript"]
        assert reprompt["response"]["status"] == "completed"
        assert reply == load_clips()[reprompt_clip()].transcript
        assert "didn't catch that" in reply

        # It rearms after the re-prompt: from its response.done plus its playback.
        played_2 = fake.sessions[0].items[reprompt["response"]["output"][0]["id"]].audio_ms_sent
        start_2 = frames * 20 + played_2
        more = math.ceil((start_2 + 1000) / 20) - frames
        await client.append([SILENT] * more)
        again, _ = await client.until("input_audio_buffer.timeout_triggered")
        assert again["audio_start_ms"] == int(start_2)
        assert again["audio_end_ms"] == (frames + more) * 20
        await client.until("response.done")


async def test_idle_timeout_counts_from_session_update_and_speech_resets_it(
    make_fake: MakeFake,
) -> None:
    """Before any reply it counts from session.updated; speech restarts it; without create_response it fires once."""
    fake = await make_fake()
    td = {"type": "server_vad", "idle_timeout_ms": 600, "create_response": False}
    async with await open_client(fake) as client:
        await client.update(GA_PCMU)
        await client.append([SILENT] * 10)  # 200 ms before idle_timeout_ms is set
        await client.update(pcmu_session(turn_detection=td))
        await client.append([SILENT] * 29)
        assert "input_audio_buffer.timeout_triggered" not in kinds_of(await client.sync())
        await client.append([SILENT])
        first, _ = await client.until("input_audio_buffer.timeout_triggered")
        assert (first["audio_start_ms"], first["audio_end_ms"]) == (200, 800)
        committed, _ = await client.until("conversation.item.done")
        # Speech: 400 ms silence, 200 ms voiced, 500 ms silence ends at 1900 ms.
        await client.append([SILENT] * 20 + [LOUD] * 10 + [SILENT] * 25)
        stopped, between = await client.until("input_audio_buffer.speech_stopped")
        assert stopped["audio_end_ms"] == 1900
        assert "input_audio_buffer.timeout_triggered" not in kinds_of(between)
        await client.append([SILENT] * 29)
        after_speech = await client.sync()
        assert "input_audio_buffer.timeout_triggered" not in kinds_of(after_speech)
        assert "response.created" not in kinds_of(after_speech)  # create_response false
        await client.append([SILENT])
        second, _ = await client.until("input_audio_buffer.timeout_triggered")
        assert (second["audio_start_ms"], second["audio_end_ms"]) == (1900, 2500)
        await client.append([SILENT] * 100)  # it waits for the next response or speech
        rest = kinds_of(await client.sync())
        assert "input_audio_buffer.timeout_triggered" not in rest[1:]
        assert "response.created" not in rest
    triggered = [e for e in fake.sessions[0].sent if e["type"].endswith("timeout_triggered")]
    assert len(triggered) == 2 and committed["item"]["id"] == first["item_id"]


async def test_fail_then_incomplete_then_complete_responses(make_fake: MakeFake) -> None:
    """fail_responses ends the first responses `failed` with no audio; incomplete_responses cuts the next ones at half."""
    fake = await make_fake(fail_responses=1, incomplete_responses=1)
    async with await open_client(fake) as client:
        await client.update(GA_PCMU)
        await client.send({"type": "response.create"})
        failed, before = await client.until("response.done")
        assert kinds_of(before) == ["response.created"]
        response = failed["response"]
        assert response["status"] == "failed" and response["output"] == []
        assert response["status_details"] == {
            "type": "failed",
            "error": {
                "type": "server_error",
                "code": "server_error",
                "message": "The server had an error while processing your request.",
            },
        }

        deltas, cut = await run_response(client)
        chunks = clip_chunks(0, "audio/pcmu", 100)  # the failed response spoke no clip
        assert len(deltas) == len(chunks) // 2 and [d["delta"] for d in deltas] == [
            c.audio_b64 for c in chunks[: len(chunks) // 2]
        ]
        response = cut["response"]
        assert response["status"] == "incomplete"
        assert response["status_details"] == {"type": "incomplete", "reason": "max_output_tokens"}
        (item,) = response["output"]
        assert item["status"] == "incomplete"
        words = [
            e["delta"]
            for e in client.events
            if e["type"] == "response.output_audio_transcript.delta"
        ]
        transcript = item["content"][0]["transcript"]
        assert transcript == "".join(words) and 0 < len(transcript) < len(
            load_clips()[0].transcript
        )

        deltas, whole = await run_response(client)
        assert whole["response"]["status"] == "completed"
        assert len(deltas) == len(clip_chunks(1, "audio/pcmu", 100))
    assert [r["status"] for r in (failed["response"], cut["response"], whole["response"])] == [
        "failed",
        "incomplete",
        "completed",
    ]


async def test_input_transcription_follows_each_spoken_user_item(make_fake: MakeFake) -> None:
    """With audio.input.transcription, each spoken item gets transcription delta(s) and completed."""
    fake = await make_fake()
    async with await open_client(fake) as client:
        session = pcmu_session(
            transcription={"model": "gpt-transcribe", "language": "en"},
            noise_reduction={"type": "far_field"},
        )
        audio_in = (await client.update(session))["session"]["audio"]["input"]
        assert audio_in["transcription"] == {"model": "gpt-transcribe", "language": "en"}
        assert audio_in["noise_reduction"] == {"type": "far_field"}
        # Speech from 200 ms (with prefix padding) to 1400 ms: "1.2 s".
        await client.append([SILENT] * 25 + [LOUD] * 20 + [SILENT] * 30)
        stopped, _ = await client.until("input_audio_buffer.speech_stopped")
        completed, events = await client.until(
            "conversation.item.input_audio_transcription.completed"
        )
        deltas = [e for e in events if e["type"].endswith("input_audio_transcription.delta")]
        assert completed["item_id"] == stopped["item_id"] and completed["content_index"] == 0
        assert completed["transcript"] == "(caller speech, 1.2 s)"
        assert "".join(d["delta"] for d in deltas) == completed["transcript"]
        assert all(d["item_id"] == stopped["item_id"] for d in deltas)
        usage = completed["usage"]
        assert usage["type"] == "tokens" and usage["total_tokens"] == (
            usage["input_tokens"] + usage["output_tokens"]
        )
        done, _ = await client.until("response.done")
        assert done["response"]["output"][0]["content"][0]["transcript"]  # the assistant's words
        await client.send({"type": "conversation.item.retrieve", "item_id": stopped["item_id"]})
        retrieved, _ = await client.until("conversation.item.retrieved")
        assert retrieved["item"]["content"][0]["transcript"] == "(caller speech, 1.2 s)"

        # whisper-1 is billed by duration; a manual commit (VAD off) is transcribed too.
        await client.update(
            pcmu_session(
                transcription={"model": "whisper-1"}, turn_detection=None, noise_reduction=None
            )
        )
        await client.send({"type": "input_audio_buffer.clear"})  # 100 ms left after the stop
        await client.until("input_audio_buffer.cleared")
        await client.append([LOUD] * 25)
        await client.send({"type": "input_audio_buffer.commit"})
        completed, _ = await client.until("conversation.item.input_audio_transcription.completed")
        assert completed["transcript"] == "(caller speech, 0.5 s)"
        assert completed["usage"] == {"type": "duration", "seconds": 0.5}
    assert fake.sessions[0].config["audio"]["input"]["noise_reduction"] is None


BAD_UPDATES: list[tuple[dict[str, Any], str, str]] = [
    ({"turn_detection": {"type": "push_to_talk"}}, "turn_detection.type", "invalid_value"),
    (
        {"turn_detection": {"type": "semantic_vad", "eagerness": "fast"}},
        "turn_detection.eagerness",
        "invalid_value",
    ),
    (
        {"turn_detection": {"type": "semantic_vad", "idle_timeout_ms": 5000}},
        "turn_detection.idle_timeout_ms",
        "invalid_value",
    ),
    (
        {"turn_detection": {"type": "server_vad", "eagerness": "high"}},
        "turn_detection.eagerness",
        "unknown_parameter",
    ),
    (
        {"turn_detection": {"type": "server_vad", "threshold": 1.5}},
        "turn_detection.threshold",
        "decimal_above_max_value",
    ),
    (
        {"turn_detection": {"type": "server_vad", "threshold": -0.1}},
        "turn_detection.threshold",
        "decimal_below_min_value",
    ),
    (
        {"turn_detection": {"type": "server_vad", "threshold": "high"}},
        "turn_detection.threshold",
        "invalid_type",
    ),
    (
        {"turn_detection": {"type": "server_vad", "silence_duration_ms": -1}},
        "turn_detection.silence_duration_ms",
        "integer_below_min_value",
    ),
    (
        {"turn_detection": {"type": "server_vad", "prefix_padding_ms": -20}},
        "turn_detection.prefix_padding_ms",
        "integer_below_min_value",
    ),
    (
        {"turn_detection": {"type": "server_vad", "idle_timeout_ms": -100}},
        "turn_detection.idle_timeout_ms",
        "integer_below_min_value",
    ),
    (
        {"turn_detection": {"type": "server_vad", "create_response": "yes"}},
        "turn_detection.create_response",
        "invalid_type",
    ),
    ({"noise_reduction": {"type": "studio"}}, "noise_reduction.type", "invalid_value"),
    ({"transcription": {"model": "whisper-2"}}, "transcription.model", "invalid_value"),
    (
        {"transcription": {"model": "gpt-transcribe", "speaker": "a"}},
        "transcription.speaker",
        "unknown_parameter",
    ),
]


async def test_session_update_rejects_bad_turn_detection_noise_and_transcription(
    make_fake: MakeFake,
) -> None:
    """Each bad field gets an invalid_request_error naming it, and the session stays as it was."""
    fake = await make_fake()
    async with await open_client(fake) as client:
        good = pcmu_session(
            turn_detection={"type": "server_vad", "threshold": 0.7, "idle_timeout_ms": 4000},
            noise_reduction={"type": "near_field"},
            transcription={"model": "gpt-4o-mini-transcribe"},
        )
        before = (await client.update(good))["session"]
        for i, (fields, param, code) in enumerate(BAD_UPDATES):
            event_id = f"bad_{i}"
            session = {"type": "realtime", "audio": {"input": fields}}
            await client.send(
                {"type": "session.update", "event_id": event_id, "session": session}, check=False
            )
            error, between = await client.until("error")
            assert "session.updated" not in kinds_of(between)
            assert error["error"]["type"] == "invalid_request_error"
            assert (
                error["error"]["param"],
                error["error"]["code"],
                error["error"]["event_id"],
            ) == (
                f"session.audio.input.{param}",
                code,
                event_id,
            ), fields
        assert fake.sessions[0].config == before
        # The boundaries themselves are fine; null turns noise reduction off.
        edge = pcmu_session(
            turn_detection={"type": "server_vad", "threshold": 1, "silence_duration_ms": 0},
            noise_reduction=None,
        )
        audio_in = (await client.update(edge))["session"]["audio"]["input"]
        assert audio_in["turn_detection"]["threshold"] == 1 and audio_in["noise_reduction"] is None
        assert audio_in["transcription"] == {"model": "gpt-4o-mini-transcribe"}  # untouched
        assert audio_in["turn_detection"]["idle_timeout_ms"] == 4000  # merged, not replaced
    assert len(fake.sessions[0].errors_sent) == len(BAD_UPDATES)


@pytest.mark.parametrize(
    ("eagerness", "silence_ms"), [("high", 260), ("auto", 500), ("medium", 500), ("low", 1000)]
)
async def test_semantic_vad_eagerness_sets_the_trailing_silence(
    make_fake: MakeFake, eagerness: str, silence_ms: int
) -> None:
    """semantic_vad ends the turn after ~250 / 500 / 1000 ms of silence for high / medium|auto / low."""
    fake = await make_fake()
    td = {"type": "semantic_vad", "eagerness": eagerness, "create_response": False}
    async with await open_client(fake) as client:
        updated = await client.update(pcmu_session(turn_detection=td))
        assert updated["session"]["audio"]["input"]["turn_detection"] == {
            "type": "semantic_vad",
            "eagerness": eagerness,
            "create_response": False,
            "interrupt_response": True,
        }
        await client.append([LOUD] * 10 + [SILENT] * 60)
        stopped, _ = await client.until("input_audio_buffer.speech_stopped")
    assert stopped["audio_end_ms"] == 200 + silence_ms  # 20 ms frames: "high" stops at 260


async def test_tool_call_then_function_output_then_a_spoken_reply(make_fake: MakeFake) -> None:
    """With tool_call and the tool declared, caller speech gets a function_call; its output then a clip."""
    arguments = '{"reason": "caller asked for a human"}'
    fake = await make_fake(tool_call=("transfer_call", arguments))
    tool = {
        "type": "function",
        "name": "transfer_call",
        "description": "Transfer to a human",
        "parameters": {"type": "object", "properties": {"reason": {"type": "string"}}},
    }
    async with await open_client(fake) as client:
        await client.update({**GA_PCMU, "tools": [tool]})
        await client.append([SILENT] * 5 + [LOUD] * 10 + [SILENT] * 26)
        done, events = await client.until("response.done")
        start = kinds_of(events).index("response.created")
        assert kinds_of(events)[start:] == [
            "response.created",
            "rate_limits.updated",
            "response.output_item.added",
            "conversation.item.added",
            *["response.function_call_arguments.delta"] * 3,
            "response.function_call_arguments.done",
            "response.output_item.done",
            "conversation.item.done",
        ]
        added = events[start + 2]["item"]
        assert (added["type"], added["name"], added["arguments"], added["status"]) == (
            "function_call",
            "transfer_call",
            "",
            "in_progress",
        )
        call_id = added["call_id"]
        assert call_id.startswith("call_")
        pieces = [
            e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"
        ]
        assert "".join(pieces) == arguments
        args_done = events[start + 7]
        assert (args_done["name"], args_done["arguments"], args_done["call_id"]) == (
            "transfer_call",
            arguments,
            call_id,
        )
        assert not [e for e in events if e["type"] == "response.output_audio.delta"]
        response = done["response"]
        assert response["status"] == "completed"
        (item,) = response["output"]
        assert item == {
            "id": added["id"],
            "object": "realtime.item",
            "type": "function_call",
            "status": "completed",
            "name": "transfer_call",
            "call_id": call_id,
            "arguments": arguments,
        }
        # Function-call items carry no audio to truncate.
        await client.send(
            {
                "type": "conversation.item.truncate",
                "item_id": item["id"],
                "content_index": 0,
                "audio_end_ms": 0,
            }
        )
        error, _ = await client.until("error")
        assert error["error"]["message"] == "Only model output audio messages can be truncated"

        output = {"type": "function_call_output", "call_id": call_id, "output": '{"ok": true}'}
        await client.send({"type": "conversation.item.create", "item": output})
        item_done, _ = await client.until("conversation.item.done")
        assert item_done["previous_item_id"] == item["id"]
        create = {
            "type": "response.create",
            "response": {"instructions": "Say you are transferring."},
        }
        await client.send(create)
        reply, events = await client.until("response.done")
        assert reply["response"]["status"] == "completed"
        assert (
            reply["response"]["output"][0]["content"][0]["transcript"] == load_clips()[0].transcript
        )
        assert len([e for e in events if e["type"] == "response.output_audio.delta"]) > 5
    record = fake.sessions[0]
    assert record.function_calls == [item]
    assert record.items_created == [item_done["item"]]
    assert [(o["call_id"], o["output"]) for o in record.function_outputs] == [
        (call_id, '{"ok": true}')
    ]
    assert record.response_creates == [create]


async def test_tool_call_needs_the_tool_declared_and_caller_speech(make_fake: MakeFake) -> None:
    """No declared tool (or no speech yet, or tool_choice none): responses speak as usual."""
    fake = await make_fake(tool_call=("transfer_call", "{}"))
    async with await open_client(fake) as client:
        await client.update(GA_PCMU)
        await client.append([LOUD] * 10 + [SILENT] * 26)  # speech, but no tools declared
        done, _ = await client.until("response.done")
        assert done["response"]["output"][0]["type"] == "message"
        tool = {"type": "function", "name": "transfer_call"}
        await client.update({"type": "realtime", "tools": [tool]})
        _, done = await run_response(client)  # no caller speech since the last response
        assert done["response"]["output"][0]["type"] == "message"
        await client.append([LOUD] * 10 + [SILENT] * 26)
        await client.until("input_audio_buffer.speech_stopped")
        await client.until("response.done")  # this one is the function call
        await client.append([LOUD] * 10 + [SILENT] * 26)
        await client.until("input_audio_buffer.speech_stopped")
        call, _ = await client.until("response.done")
        assert call["response"]["output"][0]["type"] == "function_call"  # once per caller turn
    assert len(fake.sessions[0].function_calls) == 2


def test_fault_options_are_checked() -> None:
    """Bad fault options fail at construction, not mid-call."""
    with pytest.raises(ValueError):
        FakeRealtimeOptions(fail_responses=-1)
    with pytest.raises(ValueError):
        FakeRealtimeOptions(tool_call=("transfer_call", "{not json"))
    with pytest.raises(ValueError):
        FakeRealtimeOptions(tool_call=("", "{}"))
    assert FakeRealtimeOptions(tool_call=("f", "{}")).tool_call == ("f", "{}")
