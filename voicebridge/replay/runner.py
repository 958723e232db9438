"""``voicebridge replay``: recorded calls played as Twilio plays them, many at once, measured.

Each simulated call gets a fresh CallSid and StreamSid; the AccountSid is one per run, as
every call to one Twilio account carries the same. In webhook mode it POSTs "A call comes in"
like Twilio (signed with the Auth Token if given), reads the TwiML and opens ``<Stream url>``
with the ``<Parameter>``s as ``start.customParameters`` (the handshake signed too); in
direct mode it opens the given WebSocket URL and, given the bridge's secret, mints the
per-call stream token itself. The stream is an :class:`EmulatedCall`. Calls start at most
``ramp`` per second, at most ``concurrency`` at a time, until ``calls`` were placed or
``duration`` ran out (then every active call hangs up). Everything is bounded: each call by
its timeout, the whole run by a hard cap. A call is ok when the caller hung up, or when the
server closed with 1000 (a deliberate end); any other close is a failure. The report is
:class:`ReplayReport`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from pathlib import Path

from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

from voicebridge.core.admission import TOKEN_PARAMETER, mint_token
from voicebridge.replay.metrics import call_metrics
from voicebridge.replay.options import (
    MAX_CALLS,
    MAX_RUN_S,
    NORMAL_CLOSE,
    WEBHOOK_TIMEOUT_S,
    ReplayOptions,
    call_timeout_s,
)
from voicebridge.replay.progress import Snapshot
from voicebridge.replay.report import CallOutcome, ReplayReport
from voicebridge.twilio_sim.bench import frame_id_base, run_tag
from voicebridge.twilio_sim.emulator import CallReport, EmulatedCall, after_stream
from voicebridge.twilio_sim.script import CallScript, spoken_until_ms
from voicebridge.twilio_sim.webhook_client import (
    LocalProxy,
    TwiML,
    call_params,
    new_sid,
    post_webhook,
)

__all__ = [
    "MAX_CALLS",
    "MAX_RUN_S",
    "ReplayOptions",
    "call_timeout_s",
    "run_replay",
]

log = logging.getLogger(__name__)


class _Refused(Exception):
    """The call never reached a stream: ``reason`` is a stable label."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.detail = reason, detail


def _cut_short(exc: asyncio.IncompleteReadError) -> str:
    expected = "" if exc.expected is None else f" of {exc.expected}"
    return f"the answer was cut short: the server closed after {len(exc.partial)}{expected} bytes"


class _Run:
    def __init__(self, options: ReplayOptions) -> None:
        self.o = options
        self.scripts = [
            CallScript.from_recording(r, speech_threshold=options.speech_threshold)
            for r in options.recordings
        ]
        self.call_timeout = call_timeout_s(options, self.scripts)
        self.max_calls = options.calls or (MAX_CALLS if options.duration_s else options.concurrency)
        self.proxy = LocalProxy(options.connect_to) if options.connect_to else None
        self.account_sid = options.account_sid or new_sid("AC")
        self.outcomes: list[CallOutcome] = []
        self.calls: dict[int, EmulatedCall] = {}  # the streams open now
        self.active = 0
        self.failed = 0
        self.frames_sent = self.frames_received = 0  # of finished calls
        self.stopping = False
        self._stop = asyncio.Event()
        self.tag = run_tag()  # bench: frame ids unique to this run

    def snapshot(self) -> Snapshot:
        reports = [c.report for c in self.calls.values()]
        return Snapshot(
            active=self.active,
            done=len(self.outcomes) - self.active,
            failed=self.failed,
            frames_sent=self.frames_sent + sum(r.frames_sent for r in reports),
            frames_received=self.frames_received + sum(r.frames_received for r in reports),
        )

    def run_cap_s(self) -> float:
        o = self.o
        if o.duration_s is not None:
            cap = o.duration_s + self.call_timeout
        else:
            waves = math.ceil(self.max_calls / o.concurrency)
            cap = waves * self.call_timeout + (self.max_calls / o.ramp if o.ramp else 0.0)
        return min(cap + 10.0, MAX_RUN_S)

    def stop_calls(self) -> None:
        """The run's duration is over: no new calls, every active one hangs up."""
        if self.stopping:
            return
        self.stopping = True
        self._stop.set()
        for i, call in self.calls.items():
            self.outcomes[i].cut_by_run_end = True
            call.request_hangup()

    async def _wait_stop(self, seconds: float) -> None:
        if seconds > 0:
            try:
                async with asyncio.timeout(seconds):
                    await self._stop.wait()
            except TimeoutError:
                pass

    async def spawn(self, tg: asyncio.TaskGroup) -> None:
        slots = asyncio.Semaphore(self.o.concurrency)
        started = time.monotonic()
        for i in range(self.max_calls):
            if self.o.ramp:
                await self._wait_stop(started + i / self.o.ramp - time.monotonic())
            if self.stopping:
                return
            await slots.acquire()
            if self.stopping:
                slots.release()
                return
            self.active += 1
            self.outcomes.append(CallOutcome(i, self.scripts[i % len(self.scripts)].name, ""))
            tg.create_task(self.one_call(i, slots), name=f"replay-call-{i}")

    async def one_call(self, i: int, slots: asyncio.Semaphore) -> None:
        outcome = self.outcomes[i]
        script = self.scripts[i % len(self.scripts)]
        call: EmulatedCall | None = None
        try:
            call = await self._call(i, script, outcome)
        finally:
            call = self._finish(i, script, outcome, call)
            slots.release()
        if self.o.wav_dir is not None and call is not None and call.report.t0 > 0:
            name = f"{i:05d}-{script.name}-{outcome.call_sid}.wav"
            await self._write_wav(self.o.wav_dir / name, call)

    async def _call(self, i: int, script: CallScript, outcome: CallOutcome) -> EmulatedCall | None:
        """Place the call and fill in its outcome; its stream if it ended without an error
        (otherwise ``_finish`` finds the stream, if one was opened, in ``self.calls``)."""
        call: EmulatedCall | None = None
        try:
            async with asyncio.timeout(self.call_timeout):
                call = await self._stream(i, script, outcome)
        except _Refused as exc:
            outcome.reason, outcome.detail = exc.reason, exc.detail
        except TimeoutError:
            stream = self.calls.get(i)
            if stream is None:
                outcome.reason = "webhook_timeout"
            else:
                outcome.reason = "timeout" if stream.report.t0 > 0 else "connect_timeout"
        except InvalidStatus as exc:
            outcome.reason = f"handshake_http_{exc.response.status_code}"
        except (OSError, InvalidHandshake, InvalidURI) as exc:
            outcome.reason, outcome.detail = "connect_failed", f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # one call's bug must not end the run: log and count it
            log.warning("replay call %d failed", i, exc_info=True)
            outcome.reason, outcome.detail = f"error_{type(exc).__name__}", str(exc)
        return call

    async def _write_wav(self, path: Path, call: EmulatedCall) -> None:
        # Mixing a whole call takes tens of ms: in a thread, so the other calls keep
        # their pace (it would show as their send lag).
        try:
            await asyncio.to_thread(call.report.write_wav, path)
        except OSError as exc:
            log.warning("could not write %s: %s", path, exc)

    async def _answer(
        self, outcome: CallOutcome, account_sid: str
    ) -> tuple[str, dict[str, str], TwiML | None]:
        """(stream URL, customParameters, the webhook's TwiML if one was asked) for this call."""
        o = self.o
        if o.ws_url is not None:
            params = {"From": o.from_, "To": o.to, **o.parameters}
            if o.token_secret:
                params[TOKEN_PARAMETER] = mint_token(
                    o.token_secret.encode(), outcome.call_sid, time.time(), o.token_ttl_s
                )
            return o.ws_url, params, None
        assert o.webhook_url is not None
        posted = time.monotonic()
        try:
            answer = await post_webhook(
                o.webhook_url,
                call_params(outcome.call_sid, account_sid, from_=o.from_, to=o.to),
                auth_token=o.auth_token,
                proxy=self.proxy,
                timeout=min(WEBHOOK_TIMEOUT_S, self.call_timeout),
            )
        except TimeoutError:
            raise _Refused("webhook_timeout") from None
        except asyncio.IncompleteReadError as exc:  # an EOFError, not an OSError
            raise _Refused("webhook_failed", _cut_short(exc)) from None
        except (OSError, ValueError) as exc:
            raise _Refused("webhook_failed", f"{type(exc).__name__}: {exc}") from None
        outcome.webhook_ms = (time.monotonic() - posted) * 1000.0
        if answer.status != 200:
            raise _Refused(f"webhook_http_{answer.status}", answer.body[:200])
        twiml = answer.twiml
        if twiml is None:
            raise _Refused("webhook_not_twiml", answer.content_type)
        if twiml.stream_url is None:
            said = " / ".join(twiml.says_before)
            raise _Refused("busy" if said else "no_stream", said or answer.body[:200])
        return twiml.stream_url, dict(twiml.parameters), twiml

    async def _stream(self, i: int, script: CallScript, outcome: CallOutcome) -> EmulatedCall:
        o = self.o
        outcome.call_sid = new_sid("CA")
        url, params, twiml = await self._answer(outcome, self.account_sid)
        net = o.network
        if net.seed is not None:
            net = dataclasses.replace(net, seed=net.seed + i)  # not the same jitter everywhere
        call = EmulatedCall(
            url,
            o.recordings[i % len(o.recordings)],
            script=script,
            parameters=params,
            network=net,
            speed=o.speed,
            loop=o.loop,
            hangup_at_ms=o.call_duration_s * 1000.0 if o.call_duration_s else None,
            tail_ms=o.tail_ms,
            call_sid=outcome.call_sid,
            account_sid=self.account_sid,
            auth_token=o.auth_token,
            proxy=self.proxy,
            keep_messages=False,
            keep_audio=o.wav_dir is not None,
            dither_base=frame_id_base(self.tag, i) if o.bench_dither else None,
            frame_log=o.bench_frames,
            direct_url=o.bench_direct_url if i % o.bench_direct_every == 0 else None,
        )
        self.calls[i] = call
        if self.stopping:
            outcome.cut_by_run_end = True
            call.request_hangup()
        await call.run(self.call_timeout)
        after: tuple[tuple[str, str], ...] = ()
        if call.report.closed_by == "server" and twiml is not None:
            # As Twilio does: the <Connect action>'s answer, else the verbs after </Connect>.
            after = await after_stream(
                twiml, outcome.call_sid, self.account_sid, o.from_, o.to, o.auth_token, self.proxy
            )
        _judge(outcome, call.report, after)
        return call

    def _finish(
        self, i: int, script: CallScript, outcome: CallOutcome, call: EmulatedCall | None
    ) -> EmulatedCall | None:
        """Count the call and measure it (the stream, if one was opened, is returned)."""
        self.active -= 1
        if call is None:
            call = self.calls.pop(i, None)
        else:
            self.calls.pop(i, None)
        if not outcome.ok:
            self.failed += 1
            outcome.reason = outcome.reason or "cancelled"
        if call is None:
            return None
        r = call.report
        self.frames_sent += r.frames_sent
        self.frames_received += r.frames_received
        outcome.connect_ms = r.connect_ms
        outcome.frames_sent, outcome.frames_received = r.frames_sent, r.frames_received
        outcome.echoes_sent, outcome.clears = r.echoes_sent, len(r.player.clears)
        outcome.violations = r.violation_count
        outcome.violation_samples = sorted(set(r.violations))
        outcome.close_code = r.close_code
        if r.t0 <= 0:
            return call
        end = r.ended_at or call.now()
        outcome.duration_ms = end
        outcome.send_lag_ms = r.send_lag_max_ms
        o = self.o
        until = spoken_until_ms(script, r.frames_sent, speed=o.speed, loop=o.loop)
        speech = script.speech_on_call_clock(speed=o.speed, loop=o.loop, until_ms=until)
        outcome.metrics = call_metrics(
            r.player.chunks, r.player.clears, speech, call_end_ms=end, turn_gap_ms=o.turn_gap_ms
        )
        return call


def _judge(outcome: CallOutcome, report: CallReport, after: tuple[tuple[str, str], ...]) -> None:
    """ok or not, and how the stream ended.

    The caller hanging up is the normal end; so is the server closing with 1000 (the
    assistant ended the call on purpose) when what Twilio runs next says nothing more (a
    hang-up, a transfer). Any other close from the server is a failure, and so is an
    apology after a deliberate ending. ``after``: the TwiML verbs Twilio ran once the server
    closed the stream (``outcome.after_stream``).
    """
    if report.closed_by != "server":
        outcome.ok, outcome.reason = True, "caller_hung_up"
        return
    outcome.after_stream = " ".join(verb for verb, _ in after) or None
    apology = any(verb in ("Say", "Error") for verb, _ in after)
    ok = report.close_code == NORMAL_CLOSE and not apology
    then = ", ".join(f"{v} {t}".strip() for v, t in after)
    details = [f"close reason: {report.close_reason}"] if report.close_reason else []
    if then:
        details.append(f"then Twilio runs: {then}" if ok else f"failure path: {then}")
    outcome.ok = ok
    if ok or report.close_code != NORMAL_CLOSE:
        outcome.reason = "ended_by_server" if ok else f"closed_by_server_{report.close_code}"
    else:
        outcome.reason = "apology_after_a_deliberate_end"
    outcome.detail = "; ".join(details) or None


async def run_replay(options: ReplayOptions) -> ReplayReport:
    """Place the calls, wait for them, measure them.

    Raises:
        ValueError: bad options or a recording that cannot be played.
    """
    options.check()
    run = _Run(options)
    if options.wav_dir is not None:
        options.wav_dir.mkdir(parents=True, exist_ok=True)
    loop = asyncio.get_running_loop()
    started = time.monotonic()
    aborted = False
    progress_done = asyncio.Event()
    timer = loop.call_later(options.duration_s, run.stop_calls) if options.duration_s else None
    try:
        async with asyncio.timeout(run.run_cap_s()), asyncio.TaskGroup() as outer:
            if options.progress is not None:
                outer.create_task(
                    options.progress.run(run.snapshot, progress_done), name="replay-progress"
                )
            try:
                async with asyncio.TaskGroup() as calls:
                    await run.spawn(calls)
            finally:
                progress_done.set()
    except TimeoutError:
        aborted = True
        log.error("replay: the run hit its time cap of %.0f s and was stopped", run.run_cap_s())
    finally:
        if timer is not None:
            timer.cancel()
    return ReplayReport(
        target={**options.target, "account_sid": run.account_sid},
        options=options.summary(),
        outcomes=run.outcomes,
        elapsed_s=time.monotonic() - started,
        aborted=aborted,
    )
