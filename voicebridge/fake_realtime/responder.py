"""The fake Realtime server's responses on one connection: start, pace, end.

It decides what each response is (a clip, a failure or a cut-short clip from the fault
options, or a function call), streams it faster than real time in a task, and ends it with
``response.done`` "no matter the final state" (PROTOCOLS.md B.3). State changes and their
events happen in synchronous methods; only pacing and socket writes await.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from websockets.exceptions import ConnectionClosed

from .clips import clip_chunks, load_clips, reprompt_clip
from .config import check_max_output_tokens, check_metadata
from .conversation import Conversation
from .response import Emit, FakeResponse, Kind
from .session import JSON, FakeItem, FakeRealtimeOptions, FakeSession, new_id

__all__ = ["FAILED_DETAILS", "Responder"]

# status_details of a `failed` response (the real server's generic server error).
FAILED_DETAILS: JSON = {
    "type": "failed",
    "error": {
        "type": "server_error",
        "code": "server_error",
        "message": "The server had an error while processing your request.",
    },
}
INCOMPLETE_DETAILS: JSON = {"type": "incomplete", "reason": "max_output_tokens"}


class Responder:
    """Runs at most one response at a time (``active``) for a connection."""

    def __init__(
        self,
        *,
        emit: Emit,
        flush: Callable[[], Awaitable[None]],
        spawn: Callable[[Coroutine[Any, Any, None], str], object],
        conv: Conversation,
        record: FakeSession,
        options: FakeRealtimeOptions,
        config: Callable[[], JSON],
        input_ms: Callable[[], float],
        on_done: Callable[[FakeResponse], None],
    ) -> None:
        self._emit = emit
        self._flush = flush
        self._spawn = spawn
        self._conv = conv
        self._record = record
        self._opts = options
        self._config = config
        self._input_ms = input_ms
        self._on_done = on_done
        self.active: FakeResponse | None = None
        self._next_clip = options.first_clip % len(load_clips())
        self._count = 0  # responses started in this session (the fault options count them)
        self.caller_spoke = False  # caller audio committed since the last response began
        self._caller_turns = 0  # responses begun after caller audio (tool_call_turn counts them)

    def start(self, params: JSON | None, *, reprompt: bool = False) -> FakeResponse:
        """Begin a response; ``reprompt`` (idle timeout) speaks the "didn't catch that" clip."""
        params = params or {}
        config = self._config()
        out = config["audio"]["output"]
        max_tokens = check_max_output_tokens(
            params.get("max_output_tokens", config["max_output_tokens"]),
            "response.max_output_tokens",
        )
        metadata = check_metadata(params.get("metadata"), "response.metadata")
        n, self._count = self._count, self._count + 1
        fail, cut = self._opts.fail_responses, self._opts.incomplete_responses
        if self.caller_spoke and not reprompt:
            self._caller_turns += 1
        kind: Kind = "audio"
        if n < fail:
            kind = "failed"
        elif n >= fail + cut and not reprompt and self._wants_tool(params, config):
            kind = "function_call"
        self.caller_spoke = False  # this is the first response after it, whatever its kind
        if reprompt:
            index = reprompt_clip()
        else:  # only spoken responses take the next clip of the rotation
            index = self._next_clip
            if kind == "audio":
                self._next_clip = (index + 1) % len(load_clips())
        chunks = clip_chunks(index, out["format"]["type"], self._opts.delta_ms)
        incomplete = fail <= n < fail + cut
        if incomplete:  # about half the audio, then max_output_tokens
            chunks = chunks[: max(1, len(chunks) // 2)]
        response_id = new_id("resp")
        voice = out.get("voice", "marin")
        response = FakeResponse(
            emit=self._emit,
            id=response_id,
            item=FakeItem(new_id("item"), response_id),
            chunks=chunks if kind == "audio" else (),
            conversation_id=self._conv.id,
            audio_format=dict(out["format"]),
            # RealtimeResponse.audio.output.voice takes a name only, not {"id": ...}.
            voice=voice["id"] if isinstance(voice, dict) else voice,
            max_output_tokens=max_tokens,
            metadata=metadata,
            kind=kind,
            call=self._opts.tool_call or ("", ""),
            call_id=new_id("call") if kind == "function_call" else "",
        )
        if kind == "audio":
            self._record.items[response.item.item_id] = response.item
        self.active = response
        item = response.open(self._conv.last_item_id)
        if item is not None:
            self._conv.set(item)
        self._spawn(self._stream(response, incomplete), f"fake-response-{response_id}")
        return response

    def _wants_tool(self, params: JSON, config: JSON) -> bool:
        """The first response after caller speech calls ``tool_call`` if it is declared."""
        if self._opts.tool_call is None or not self.caller_spoke:
            return False
        if self._opts.tool_call_turn and self._caller_turns != self._opts.tool_call_turn:
            return False
        tools = params.get("tools", config.get("tools")) or []
        choice = params.get("tool_choice", config.get("tool_choice"))
        name = self._opts.tool_call[0]
        declared = any(
            isinstance(t, dict) and t.get("type") == "function" and t.get("name") == name
            for t in tools
        )
        return declared and choice != "none"

    async def _stream(self, response: FakeResponse, incomplete: bool) -> None:
        """Pace the response faster than real time, then end it."""
        interval = self._opts.delta_ms / self._opts.speed / 1000
        try:
            await asyncio.sleep(self._opts.response_delay_ms / 1000)
            if response.kind == "failed":
                self.finish(response, "failed", FAILED_DETAILS)
            for piece in response.argument_pieces() if response.kind == "function_call" else ():
                if response.done:
                    break
                response.send_arguments(piece)
                await self._flush()
                await asyncio.sleep(interval)
            midway = len(response.chunks) // 2 if self._opts.pause_midway_ms else -1
            for n, chunk in enumerate(response.chunks):
                if n == midway:  # generation slower than real time: the caller hears all
                    await asyncio.sleep(self._opts.pause_midway_ms / 1000)
                # Cancelled, interrupted or truncated while this task slept.
                if response.done or response.audio_stopped:
                    break
                response.send_delta(chunk)
                await self._flush()
                await asyncio.sleep(interval)
            if incomplete:
                self.finish(response, "incomplete", INCOMPLETE_DETAILS)
            self.finish(response, "completed", None)  # no-op if it already ended
            await self._flush()
        except ConnectionClosed:
            pass

    def cancel(self, reason: str) -> None:
        """End the active response as cancelled (``turn_detected`` / ``client_cancelled``)."""
        if self.active is not None:
            self.finish(self.active, "cancelled", {"type": "cancelled", "reason": reason})

    def finish(self, response: FakeResponse, status: str, details: JSON | None) -> None:
        """End a response; ``response.done`` is sent "no matter the final state" (B.3)."""
        if response.done:
            return
        if self.active is response:
            self.active = None
        instructions = str(self._config().get("instructions") or "")
        item = response.close(status, details, response.usage(self._input_ms(), instructions))
        if item is not None:
            self._conv.set(item)
            if response.kind == "function_call":
                self._record.function_calls.append(copy.deepcopy(item))
        self._on_done(response)
