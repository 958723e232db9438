"""The fake Realtime server, driven through real sockets, speaks the GA protocol faithfully."""

from __future__ import annotations

import array
import asyncio
import base64
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import openai.types.realtime as rt
import pydantic
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from voicebridge.core.audio import audioop
from voicebridge.peers.clips import load_clips
from voicebridge.peers.fake_realtime import FakeRealtimeOptions, FakeRealtimeServer, FakeSession

MS = 0.001  # seconds
SERVER_EVENT = pydantic.TypeAdapter(rt.RealtimeServerEvent)
CLIENT_EVENT = pydantic.TypeAdapter(rt.RealtimeClientEvent)

# Fields the real server sends that the SDK's RealtimeSessionCreateRequest does not declare
# (they are declared on RealtimeSessionCreateResponse).
ALLOWED_EXTRAS = {"session.id", "session.object", "session.expires_at"}


def _tone_frame() -> bytes:
    """20 ms of a loud 440 Hz tone, μ-law 8 kHz."""
    samples = array.array(
        "h", (int(12000 * math.sin(2 * math.pi * 440 * i / 8000)) for i in range(160))
    )
    return audioop.lin2ulaw(samples.tobytes(), 2)


LOUD = _tone_frame()
SILENT = b"\xff" * 160  # μ-law zero
GA_PCMU: dict[str, Any] = {
    "type": "realtime",
    "audio": {
        "input": {"format": {"type": "audio/pcmu"}},
        "output": {"format": {"type": "audio/pcmu"}, "voice": "marin"},
    },
}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


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


class Client:
    """A Realtime client on a real socket, with a bounded wait for each expected event."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.ws.close()

    async def send(self, event: dict[str, Any], *, check: bool = True) -> None:
        if check:  # the tests themselves must speak GA
            CLIENT_EVENT.validate_python(event)
        await self.ws.send(json.dumps(event))

    async def append(self, frames: list[bytes]) -> None:
        for frame in frames:
            await self.send({"type": "input_audio_buffer.append", "audio": b64(frame)})

    async def recv(self) -> dict[str, Any]:
        async with asyncio.timeout(3):
            event: dict[str, Any] = json.loads(await self.ws.recv())
        self.events.append(event)
        return event

    async def until(self, kind: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The next event of type ``kind`` and the events received before it."""
        before: list[dict[str, Any]] = []
        while (event := await self.recv())["type"] != kind:
            before.append(event)
        return event, before

    async def sync(self) -> list[dict[str, Any]]:
        """Everything the server sent before it processed a marker event sent now."""
        await self.send({"type": "response.cancel", "event_id": "sync"})
        before: list[dict[str, Any]] = []
        while (event := await self.recv())["type"] != "error" or event["error"][
            "event_id"
        ] != "sync":
            before.append(event)
        return before

    async def update(self, session: dict[str, Any]) -> dict[str, Any]:
        await self.send({"type": "session.update", "session": session})
        updated, _ = await self.until("session.updated")
        return updated


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


async def open_client(
    fake: FakeRealtimeServer, query: str = "?model=gpt-realtime-2.1", **kw: Any
) -> Client:
    client = Client(await connect(fake.url + query, **kw))
    created = await client.recv()
    assert created["type"] == "session.created"
    return client


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
