"""When twilio-in writes a caller frame straight upstream, and when the frame takes the queue.

The states that must send a frame to the queue (a send buffer not empty, flow control
paused, a closing socket) cannot be produced on demand over loopback, where the kernel's
buffers absorb seconds of audio; so the upstream connection here is a stand-in with the
attributes ``Call._send_now`` reads. The fast path itself runs in every end-to-end call.
"""

from __future__ import annotations

from typing import Any

import pytest
from websockets.exceptions import ConnectionClosedError
from websockets.protocol import State

from voicebridge.config import Settings
from voicebridge.core import realtime as rt
from voicebridge.core.actions import SendUpstream
from voicebridge.server.call import DIRECT_SEND_MAX, Call

FRAME = SendUpstream(rt.append_audio("/" * 212), audio=True)


class Upstream:
    """What _send_now looks at on a websockets ClientConnection, and what it sent."""

    def __init__(self) -> None:
        self.state = State.OPEN
        self.paused = False
        self.buffered = 0
        self.fail = False
        self.sent: list[str] = []
        self.transport = self

    def get_write_buffer_size(self) -> int:
        return self.buffered

    async def send(self, text: str) -> None:
        if self.fail:
            raise ConnectionClosedError(None, None)
        self.sent.append(text)


def _call(upstream: Upstream | None) -> Call:
    call = Call(ws=None, settings=Settings(), admit=lambda start: None)  # type: ignore[arg-type]
    call._upstream_conn = upstream  # type: ignore[assignment]
    return call


async def test_a_frame_with_nothing_ahead_on_an_idle_socket_is_written_at_once() -> None:
    """Open, idle, nothing queued: the frame goes out without the queue."""
    upstream = Upstream()
    call = _call(upstream)
    assert await call._send_now(FRAME)
    assert upstream.sent == [FRAME.text] and call.upstream_q.waiting() == 0


def _buffered(u: Upstream) -> None:
    u.buffered = 300


def _paused(u: Upstream) -> None:
    u.paused = True


def _closing(u: Upstream) -> None:
    u.state = State.CLOSING


def _failing(u: Upstream) -> None:
    u.fail = True


@pytest.mark.parametrize("make", [_buffered, _paused, _closing, _failing])
async def test_a_socket_that_could_make_the_reader_wait_gets_no_direct_write(make: Any) -> None:
    """A send buffer not empty, paused flow control or a closing socket: the queue."""
    upstream = Upstream()
    make(upstream)
    assert not await _call(upstream)._send_now(FRAME)
    assert upstream.sent == []


async def test_a_frame_behind_queued_messages_keeps_its_place() -> None:
    """With a control message queued, the frame follows it through the queue."""
    upstream = Upstream()
    call = _call(upstream)
    call.upstream_q.put_control(rt.response_create("event_1"))
    assert not await call._send_now(FRAME)
    assert upstream.sent == []


async def test_only_small_audio_frames_are_written_directly() -> None:
    """Control messages and oversized frames always take the queue; no upstream, likewise."""
    upstream = Upstream()
    call = _call(upstream)
    big = SendUpstream(rt.append_audio("A" * DIRECT_SEND_MAX), audio=True)
    control = SendUpstream(rt.response_create("event_2"))
    assert not await call._send_now(big)
    assert not await call._send_now(control)
    assert not await _call(None)._send_now(FRAME)
    assert upstream.sent == []
