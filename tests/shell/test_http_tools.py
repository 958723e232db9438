"""HTTP tools at production timings: the business backend in memory, on the virtual clock.

The model (the fake Realtime server) calls ``check_table``; the bridge validates the
arguments, POSTs them signed with the call's context, and the backend's JSON goes back as the
function output, after which the model answers. A backend that hangs past the tool's timeout
gets a holding line said to the caller meanwhile, and the model is told the tool failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx

from tests.support.shell import Bridged, bridged, until
from voicebridge.business_sim.backend import TOOLS_TOML, BusinessBackend
from voicebridge.config import DEFAULT_HOLDING, Secret, Settings
from voicebridge.fake_realtime.session import FakeRealtimeOptions
from voicebridge.server.connect import Connect
from voicebridge.twilio_sim.recordings import packaged_call

SECRET = "business-signing-secret-0123456789"
CALLER = {"From": "+14155550123", "To": "+18005550100", "param_tenant": "roma"}
GOOD_ARGS = '{"party_size": 4, "time": "19:30"}'


def tools_file(tmp_path: Path, timeout_s: float = 4.0) -> str:
    path = tmp_path / "tools.toml"
    path.write_text(TOOLS_TOML.format(url="https://backend.test", timeout_s=timeout_s))
    return str(path)


def in_memory(backend: BusinessBackend) -> Callable[[Settings], Connect]:
    """The call's Connect, its HTTP client reaching ``backend`` in memory."""
    return lambda s: Connect(s, custom=[], transport=httpx.ASGITransport(app=backend.app))


@contextlib.asynccontextmanager
async def caller_on_the_line(b: Bridged) -> AsyncIterator[None]:
    caller = asyncio.create_task(b.twilio.play(packaged_call("books_a_table"), tail_s=600.0))
    try:
        yield
    finally:
        caller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await caller


def output_sent_at(b: Bridged) -> float | None:
    """When the bridge sent the function output (the loop's clock)."""
    if not b.realtime.pipes:
        return None
    for at, e in b.realtime.pipes[0].events("client", "conversation.item.create"):
        if e["item"]["type"] == "function_call_output":
            return at
    return None


def spoken_after(b: Bridged, since: float) -> list[str]:
    """Responses created after ``since`` that spoke (audio deltas)."""
    pipe = b.realtime.pipes[0]
    voiced = {e["response_id"] for _, e in pipe.events("server", "response.output_audio.delta")}
    created = [e["response"]["id"] for at, e in pipe.events("server", "response.created")]
    times = {e["response"]["id"]: at for at, e in pipe.events("server", "response.created")}
    return [r for r in created if times[r] >= since and r in voiced]


def answered_after_output(b: Bridged) -> bool:
    sent = output_sent_at(b)
    return sent is not None and bool(spoken_after(b, sent))


def settings_for(tmp_path: Path, **kw: object) -> dict[str, object]:
    return {"tools_file": tools_file(tmp_path, **kw), "signing_secret": Secret(SECRET)}


async def test_the_backend_answers_and_the_model_speaks_on(tmp_path: Path) -> None:
    """A signed request with the call's context reaches the backend; its JSON is the function
    output; the model's next answer follows it."""
    backend = BusinessBackend(SECRET)
    options = FakeRealtimeOptions(tool_call=("check_table", GOOD_ARGS), tool_call_turn=1)
    settings = settings_for(tmp_path)
    async with (
        asyncio.timeout(120),
        bridged(options, connect=in_memory(backend), parameters=CALLER, **settings) as b,
        caller_on_the_line(b),
    ):
        await until(lambda: answered_after_output(b))
        b.twilio.stop()
        result = await b.result()
    assert not result.failed
    [request] = backend.tool_requests
    assert backend.bad_signatures == 0  # the backend verified X-Voicebridge-Signature
    assert request["tool"] == "check_table"
    assert request["arguments"] == {"party_size": 4, "time": "19:30"}
    call = {"call_sid": "CA0001", "caller": "+14155550123", "called": "+18005550100"}
    assert request["call"] == {**call, "profile": "default", "params": {"tenant": "roma"}}
    [made] = b.realtime.sessions[0].function_calls
    assert request["request_id"] == f"CA0001:{made['call_id']}"
    [output] = b.realtime.sessions[0].function_outputs
    assert output["call_id"] == made["call_id"]
    assert json.loads(output["output"]) == {"available": True, "time": "19:30", "party_size": 4}
    assert b.call.connect.tool_metrics.count("check_table", "ok") == 1
    # Quick: no holding line was needed.
    creates = [e for _, e in b.realtime.pipes[0].events("client", "response.create")]
    assert all(e.get("response", {}).get("instructions") != DEFAULT_HOLDING for e in creates)


async def test_a_hanging_backend_gets_a_holding_line_then_a_failure(tmp_path: Path) -> None:
    """The backend answers after 60 s, the tool's timeout is 4 s: 1.5 s after the call the
    model is asked for the holding line (and it is played to the caller), at 4 s it is told in
    one sentence that the tool failed, and it answers again."""
    backend = BusinessBackend(SECRET, hang_s=60.0)
    options = FakeRealtimeOptions(tool_call=("check_table", GOOD_ARGS), tool_call_turn=1)
    async with (
        asyncio.timeout(300),
        bridged(
            options, connect=in_memory(backend), parameters=CALLER, **settings_for(tmp_path)
        ) as b,
        caller_on_the_line(b),
    ):
        await until(lambda: answered_after_output(b))
        b.twilio.stop()
        await b.result()
    pipe = b.realtime.pipes[0]
    [(called_at, _)] = [
        (at, e)
        for at, e in pipe.events("server", "response.done")
        if any(o.get("type") == "function_call" for o in e["response"]["output"])
    ]
    holds = [
        at
        for at, e in pipe.events("client", "response.create")
        if e.get("response", {}).get("instructions") == DEFAULT_HOLDING
    ]
    assert len(holds) == 1 and 1.5 <= holds[0] - called_at < 1.6
    held = spoken_after(b, holds[0])[0]  # the holding line, spoken and sent to the caller
    deltas = {
        e["delta"]
        for _, e in pipe.events("server", "response.output_audio.delta")
        if e["response_id"] == held
    }
    assert any(c.payload in deltas and c.played > 0 for c in b.twilio.player.chunks)
    sent = output_sent_at(b)
    assert sent is not None and 4.0 <= sent - called_at < 4.1
    [output] = b.realtime.sessions[0].function_outputs
    assert output["output"] == (
        "The check_table tool failed (no answer within 4 seconds), so tell the caller you "
        "could not do that just now."
    )
    assert b.call.connect.tool_metrics.count("check_table", "timeout") == 1


async def test_invalid_arguments_never_reach_the_backend(tmp_path: Path) -> None:
    """Arguments against the tool's JSON Schema: no request; the model is told why."""
    backend = BusinessBackend(SECRET)
    bad = '{"party_size": "four", "time": "19:30"}'
    options = FakeRealtimeOptions(tool_call=("check_table", bad), tool_call_turn=1)
    async with (
        asyncio.timeout(120),
        bridged(
            options, connect=in_memory(backend), parameters=CALLER, **settings_for(tmp_path)
        ) as b,
        caller_on_the_line(b),
    ):
        await until(lambda: answered_after_output(b))
        b.twilio.stop()
        await b.result()
    assert backend.tool_requests == []
    [output] = b.realtime.sessions[0].function_outputs
    assert output["output"].startswith(
        "The check_table tool was not called because its arguments were invalid "
        "(party_size: 'four' is not of type 'integer')"
    )
    assert b.call.connect.tool_metrics.count("check_table", "invalid_arguments") == 1
