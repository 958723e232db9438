"""`voicebridge fake-realtime --tool-call NAME=JSON`: the fake model told to call a tool."""

from __future__ import annotations

import pytest

from voicebridge import cli
from voicebridge.fake_realtime import command
from voicebridge.fake_realtime.session import FakeRealtimeOptions


def test_the_tool_call_reaches_the_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[FakeRealtimeOptions] = []

    async def serve(host: str, port: int, options: FakeRealtimeOptions) -> None:
        seen.append(options)

    monkeypatch.setattr(command, "run_fake_realtime", serve)
    argv = ["fake-realtime", "--tool-call", 'check_table={"party_size": 2, "time": "20:00"}']
    assert cli.main([*argv, "--tool-call-turn", "2"]) == 0
    [options] = seen
    assert options.tool_call == ("check_table", '{"party_size": 2, "time": "20:00"}')
    assert options.tool_call_turn == 2


def test_a_bad_tool_call_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["fake-realtime", "--tool-call", "check_table={oops"]) == 2
    assert "--tool-call 'check_table={oops'" in capsys.readouterr().err
