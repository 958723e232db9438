"""When twilio-in writes a caller frame straight upstream, and when the frame takes the queue.

Two halves: ``TwilioSide._send_now`` (nothing queued ahead, small audio, an open upstream
that ``can_send_now``), and ``WebsocketsUpstream.can_send_now`` (the websockets states that
would make a send wait). The latter's states (a send buffer not empty, flow control paused,
a closing socket) cannot be produced on demand over loopback, where the kernel's buffers
absorb seconds of audio, so its connection is a stand-in with the attributes it reads. The
fast path itself runs in every end-to-end call.
"""

from __future__ import annotations

from typing import Any

import pytest
from websockets.exceptions import ConnectionClosedError
from websockets.protocol import State

from tests.support.shell import connected_call
from voicebridge.core import realtime as rt
from voicebridge.core.actions import SendUpstream
from voicebridge.server.upstream import DIRECT_SEND_MAX, UpstreamClosed, WebsocketsUpstream

FRAME = SendUpstream(rt.append_audio("/" * 212), audio=True)


class Upstream:
    """An UpstreamConnection that takes frames at once unless told otherwise."""

    def __init__(self) -> None:
        self.ready = True
        self.fail = False
        self.sent: list[str] = []

    def can_send_now(self, size: int) -> bool:
        return self.ready and size <= DIRECT_SEND_MAX

    async def send(self, text: str) -> None:
        if self.fail:
            raise UpstreamClosed("gone", 1011)
        self.sent.append(text)


async def test_a_frame_with_nothing_ahead_on_an_idle_connection_is_written_at_once() -> None:
    """Open, idle, nothing queued: the frame goes out without the queue."""
    upstream = Upstream()
    call = connected_call(upstream)
    assert await call.twilio._send_now(FRAME)
    assert upstream.sent == [FRAME.text] and call.upstream_q.waiting() == 0


@pytest.mark.parametrize("state", ["busy", "failing"])
async def test_a_connection_that_would_wait_or_fails_gets_no_direct_write(state: str) -> None:
    """A connection that cannot send now, or fails the send: the frame takes the queue."""
    upstream = Upstream()
    upstream.ready = state != "busy"
    upstream.fail = state == "failing"
    assert not await connected_call(upstream).twilio._send_now(FRAME)
    assert upstream.sent == []


async def test_a_frame_behind_queued_messages_keeps_its_place() -> None:
    """With a control message queued, the frame follows it through the queue."""
    upstream = Upstream()
    call = connected_call(upstream)
    call.upstream_q.put_control(rt.response_create("event_1"))
    assert not await call.twilio._send_now(FRAME)
    assert upstream.sent == []


async def test_only_small_audio_frames_are_written_directly() -> None:
    """Control messages and oversized frames always take the queue; no upstream, likewise."""
    upstream = Upstream()
    call = connected_call(upstream)
    big = SendUpstream(rt.append_audio("A" * DIRECT_SEND_MAX), audio=True)
    control = SendUpstream(rt.response_create("event_2"))
    assert not await call.twilio._send_now(big)
    assert not await call.twilio._send_now(control)
    assert not await connected_call(None).twilio._send_now(FRAME)
    assert upstream.sent == []


class Websocket:
    """What can_send_now looks at on a websockets ClientConnection."""

    def __init__(self) -> None:
        self.state = State.OPEN
        self.paused = False
        self.buffered = 0
        self.transport = self

    def get_write_buffer_size(self) -> int:
        return self.buffered

    async def send(self, text: str) -> None:
        raise ConnectionClosedError(None, None)


def _buffered(w: Websocket) -> None:
    w.buffered = 300


def _paused(w: Websocket) -> None:
    w.paused = True


def _closing(w: Websocket) -> None:
    w.state = State.CLOSING


def test_an_idle_open_websocket_can_take_a_small_frame_now() -> None:
    """Open, not paused, nothing buffered: a small frame can be sent without waiting."""
    conn = WebsocketsUpstream(Websocket())  # type: ignore[arg-type]
    assert conn.can_send_now(300) and not conn.can_send_now(DIRECT_SEND_MAX + 1)


@pytest.mark.parametrize("make", [_buffered, _paused, _closing])
def test_a_websocket_that_could_make_the_reader_wait_cannot_send_now(make: Any) -> None:
    """A send buffer not empty, paused flow control or a closing socket: not now."""
    ws = Websocket()
    make(ws)
    assert not WebsocketsUpstream(ws).can_send_now(300)  # type: ignore[arg-type]


async def test_a_closed_websocket_raises_the_shells_own_exception() -> None:
    """websockets' ConnectionClosed reaches the call as UpstreamClosed (one mapping)."""
    with pytest.raises(UpstreamClosed):
        await WebsocketsUpstream(Websocket()).send("x")  # type: ignore[arg-type]
