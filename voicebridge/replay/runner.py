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
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

from voicebridge.core.admission import TOKEN_PARAMETER, mint_token
from voicebridge.replay.metrics import call_metrics
from voicebridge.replay.progress import Progress, Snapshot
from voicebridge.replay.report import CallOutcome, ReplayReport
from voicebridge.twilio_sim.bench import FrameLog, frame_id_base, run_tag
from voicebridge.twilio_sim.emulator import CallReport, EmulatedCall, Network
from voicebridge.twilio_sim.recordings import Recording
from voicebridge.twilio_sim.script import CallScript, spoken_until_ms
from voicebridge.twilio_sim.webhook_client import LocalProxy, call_params, new_sid, post_webhook

__all__ = [
    "MAX_CALLS",
    "MAX_RUN_S",
    "ReplayOptions",
    "call_timeout_s",
    "run_replay",
]

log = logging.getLogger(__name__)

MAX_CALLS = 100_000  # hard cap on the calls of one run
MAX_RUN_S = 24 * 3600.0  # hard cap on a run's duration
CALL_GRACE_S = 30.0  # a call's timeout: how long it should last plus this
WEBHOOK_TIMEOUT_S = 15.0  # Twilio's default webhook timeout
NORMAL_CLOSE = 1000  # a server closing with it ended the call on purpose (end_call)

_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")


@dataclass(frozen=True)
class ReplayOptions:
    recordings: Sequence[Recording]
    webhook_url: str | None = None  # exactly one of webhook_url and ws_url
    ws_url: str | None = None
    auth_token: str | None = None  # sign the webhook and the handshake
    token_secret: str | None = None  # ws mode: mint stream tokens with the bridge's secret
    token_ttl_s: float = 60.0
    connect_to: str | None = None  # "host:port": a TLS-terminating proxy's local address
    account_sid: str | None = None  # every call's AccountSid (None: one random per run)
    from_: str = "+15005550006"
    to: str = "+15005550001"
    parameters: Mapping[str, str] = field(default_factory=dict)  # ws mode: more parameters
    concurrency: int = 1
    ramp: float | None = None  # calls started per second (None: as slots free up)
    calls: int | None = None  # None: until ``duration_s`` (or one call per slot)
    duration_s: float | None = None
    loop: bool = False
    call_duration_s: float | None = None  # with loop: each call hangs up after this
    call_timeout_s: float | None = None  # None: from the recording's length
    speed: float = 1.0
    tail_ms: float = 0.0
    network: Network = Network()
    speech_threshold: int = 500
    turn_gap_ms: float = 1000.0
    wav_dir: Path | None = None
    progress: Progress | None = None
    # Bench only (replay_bench, bench/): unique frames, their send times, a direct baseline.
    bench_dither: bool = False
    bench_frames: FrameLog | None = None  # filled with every frame's key, due and send times
    bench_direct_url: str | None = None
    bench_direct_every: int = 1  # calls i % N == 0 stream the direct baseline

    def check(self) -> None:
        """Raises ValueError with a message fit for the command line."""
        if (self.webhook_url is None) == (self.ws_url is None):
            raise ValueError("give exactly one target: a webhook URL or --ws URL")
        if not self.recordings:
            raise ValueError("no recordings to play")
        if self.concurrency < 1:
            raise ValueError("--concurrency must be at least 1")
        if self.ramp is not None and not 0 < self.ramp <= 10_000:
            raise ValueError("--ramp must be between 0 and 10000 calls per second")
        if self.calls is not None and not 1 <= self.calls <= MAX_CALLS:
            raise ValueError(f"--calls must be between 1 and {MAX_CALLS}")
        for name, value in (
            ("--duration", self.duration_s),
            ("--call-duration", self.call_duration_s),
            ("--timeout", self.call_timeout_s),
        ):
            if value is not None and not 0 < value <= MAX_RUN_S:
                raise ValueError(f"{name} must be between 0 and {MAX_RUN_S:.0f} seconds")
        if not 0.01 <= self.speed <= 100:
            raise ValueError("--speed must be between 0.01 and 100")
        if self.loop and self.call_duration_s is None and self.duration_s is None:
            raise ValueError("--loop needs --call-duration or --duration: a call must end")
        if self.call_duration_s is not None and not self.loop:
            raise ValueError("--call-duration only applies with --loop")
        if self.account_sid is not None and not _ACCOUNT_SID.fullmatch(self.account_sid):
            raise ValueError(f"--account-sid wants AC and 32 hex digits, not {self.account_sid!r}")
        if self.token_secret is not None and self.ws_url is None:
            raise ValueError("--token-secret is for --ws mode (the webhook mints tokens itself)")
        if self.connect_to is not None:
            host, _, port = self.connect_to.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"--connect-to wants HOST:PORT, not {self.connect_to!r}")
        for n in (self.network.down_ms, self.network.up_ms, self.network.jitter_ms):
            if not 0 <= n <= 10_000:
                raise ValueError("network delays must be between 0 and 10000 ms")
        if not 0 <= self.network.playout_ms <= 10_000:
            raise ValueError("--playout-ms must be between 0 and 10000 ms")
        if (self.bench_frames is not None or self.bench_direct_url) and not self.bench_dither:
            raise ValueError("--bench-frames and --bench-direct need --bench-dither")
        if self.bench_direct_every < 1:
            raise ValueError("--bench-direct-every must be at least 1")

    @property
    def target(self) -> dict[str, Any]:
        return {
            "mode": "webhook" if self.webhook_url else "ws",
            "url": self.webhook_url or self.ws_url,
            "connect_to": self.connect_to,
            "signed": bool(self.auth_token),
            "minted_tokens": bool(self.token_secret),
        }

    def summary(self) -> dict[str, Any]:
        return {
            "recordings": [r.name for r in self.recordings],
            "concurrency": self.concurrency,
            "ramp": self.ramp,
            "calls": self.calls,
            "duration_s": self.duration_s,
            "loop": self.loop,
            "call_duration_s": self.call_duration_s,
            "call_timeout_s": self.call_timeout_s,
            "speed": self.speed,
            "tail_ms": self.tail_ms,
            "network": dataclasses.asdict(self.network),
            "speech_threshold": self.speech_threshold,
            "turn_gap_ms": self.turn_gap_ms,
        }


def call_timeout_s(options: ReplayOptions, scripts: Sequence[CallScript]) -> float:
    """How long one call may take: how long it should last, plus a grace period."""
    if options.call_timeout_s is not None:
        return options.call_timeout_s
    if options.loop:
        length = options.call_duration_s or options.duration_s or 0.0
    else:
        longest = max(s.period_ms for s in scripts) + options.tail_ms
        length = longest / options.speed / 1000.0
    return min(length + CALL_GRACE_S, MAX_RUN_S)


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
    ) -> tuple[str, dict[str, str], tuple[tuple[str, str], ...]]:
        """(stream URL, customParameters, verbs after </Connect>) for this call."""
        o = self.o
        if o.ws_url is not None:
            params = {"From": o.from_, "To": o.to, **o.parameters}
            if o.token_secret:
                params[TOKEN_PARAMETER] = mint_token(
                    o.token_secret.encode(), outcome.call_sid, time.time(), o.token_ttl_s
                )
            return o.ws_url, params, ()
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
        return twiml.stream_url, dict(twiml.parameters), twiml.after_connect

    async def _stream(self, i: int, script: CallScript, outcome: CallOutcome) -> EmulatedCall:
        o = self.o
        outcome.call_sid = new_sid("CA")
        url, params, after = await self._answer(outcome, self.account_sid)
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
    assistant ended the call on purpose). Any other close from the server is a failure.
    ``after``: the TwiML verbs Twilio runs once the server closed the stream.
    """
    if report.closed_by != "server":
        outcome.ok, outcome.reason = True, "caller_hung_up"
        return
    ok = report.close_code == NORMAL_CLOSE
    then = ", ".join(f"{v} {t}".strip() for v, t in after)
    details = [f"close reason: {report.close_reason}"] if report.close_reason else []
    if then:
        details.append(f"then Twilio runs: {then}" if ok else f"failure path: {then}")
    outcome.ok = ok
    outcome.reason = "ended_by_server" if ok else f"closed_by_server_{report.close_code}"
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
