"""The ``voicebridge replay`` command line: options, checks, the run, the report.

Exit status: 0 when every call was ok with no protocol violation, 1 otherwise, 2 for bad
arguments or unreadable recordings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from voicebridge.logs import setup_logging
from voicebridge.replay.progress import Progress
from voicebridge.replay.runner import ReplayOptions, run_replay
from voicebridge.server.serve import event_loop_factory
from voicebridge.twilio_sim.bench import FrameLog
from voicebridge.twilio_sim.emulator import Network
from voicebridge.twilio_sim.recordings import Recording, load_recording, packaged_call

__all__ = ["NAME", "add_parser", "load_recordings", "run"]

NAME = "replay"

T = TypeVar("T")

EPILOG = """\
examples:
  voicebridge replay --webhook https://voice.example.com/twilio/stream \\
      --auth-token-file token.txt --connect-to 127.0.0.1:8000 calls/*.jsonl
  voicebridge replay --ws ws://127.0.0.1:8000/realtime --token-secret-file secret.txt \\
      --concurrency 150 --ramp 10 --duration 60 --loop --json load.json quiet_line.jsonl

RECORDING is a .jsonl / .json file of Twilio messages, a directory of them, or the name of
a call packaged with voicebridge (books_a_table, interrupts).
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        NAME,
        help="play recorded calls against a bridge as Twilio would, many at once, and measure",
        description=(
            "Play recorded Twilio Media Streams calls against a webhook (or a WebSocket) the "
            "way Twilio does, N at a time, and report latencies, failures and violations."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("recordings", nargs="+", metavar="RECORDING")
    target = p.add_argument_group("target (one of)")
    where = target.add_mutually_exclusive_group(required=True)
    where.add_argument("--webhook", metavar="URL", help='the "A call comes in" URL to POST')
    where.add_argument("--ws", metavar="URL", help="a Media Streams WebSocket URL, no webhook")
    target.add_argument(
        "--connect-to",
        metavar="HOST:PORT",
        help="reach the public host at this address, as a TLS-terminating proxy would",
    )
    sec = p.add_argument_group("signatures and tokens")
    token = sec.add_mutually_exclusive_group()
    token.add_argument("--auth-token", help="Twilio Auth Token: sign the webhook and handshake")
    token.add_argument("--auth-token-file", type=Path, metavar="FILE")
    secret = sec.add_mutually_exclusive_group()
    secret.add_argument("--token-secret", help="--ws mode: the bridge's STREAM_TOKEN_SECRET")
    secret.add_argument("--token-secret-file", type=Path, metavar="FILE")
    sec.add_argument("--token-ttl", type=float, default=60.0, metavar="S")
    sec.add_argument(
        "--account-sid",
        metavar="AC…",
        help="the AccountSid every call carries (default: one random per run)",
    )
    sec.add_argument("--from", dest="from_", default="+15005550006", metavar="NUMBER")
    sec.add_argument("--to", default="+15005550001", metavar="NUMBER")
    sec.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="--ws mode: another start.customParameters entry (repeatable)",
    )
    load = p.add_argument_group("load (bounded: hard caps on calls and time)")
    load.add_argument("--concurrency", type=int, default=1, metavar="N")
    load.add_argument("--ramp", type=float, metavar="R", help="start at most R calls a second")
    load.add_argument("--calls", type=int, metavar="N", help="calls to place (default: N)")
    load.add_argument("--duration", type=float, metavar="S", help="run this long, then stop")
    load.add_argument(
        "--loop", action="store_true", help="play each recording back to back until hang-up"
    )
    load.add_argument("--call-duration", type=float, metavar="S", help="with --loop")
    load.add_argument(
        "--timeout", type=float, metavar="S", help="per call (default: its length + 30 s)"
    )
    play = p.add_argument_group("playback and network")
    play.add_argument(
        "--speed", type=float, default=1.0, help="pace the recording this much faster"
    )
    play.add_argument("--tail-ms", type=float, default=0.0, help="silence after the recording")
    play.add_argument("--down-ms", type=float, default=0.0, help="server to Twilio delay")
    play.add_argument("--up-ms", type=float, default=0.0, help="Twilio to server delay")
    play.add_argument("--jitter-ms", type=float, default=0.0, help="extra 0..J ms per message")
    play.add_argument("--playout-ms", type=float, default=0.0, help="Twilio's jitter buffer")
    play.add_argument("--seed", type=int, help="jitter seed (call i uses seed + i)")
    meas = p.add_argument_group("measurement and output")
    meas.add_argument(
        "--speech-threshold",
        type=int,
        default=500,
        metavar="RMS",
        help="frame RMS above which the caller is speaking (default 500)",
    )
    meas.add_argument(
        "--turn-gap-ms",
        type=float,
        default=1000.0,
        help="the assistant's playback idle this long starts a new turn (default 1000)",
    )
    meas.add_argument("--json", type=Path, metavar="FILE", help="write the report as JSON")
    meas.add_argument("--wav-dir", type=Path, metavar="DIR", help="a stereo WAV per call")
    meas.add_argument(
        "--progress",
        choices=("auto", "live", "plain", "off"),
        default="auto",
        help="auto: a live line on a terminal, plain lines otherwise",
    )
    meas.add_argument(
        "--log-level", default="WARNING", choices=("DEBUG", "INFO", "WARNING", "ERROR")
    )
    bench = p.add_argument_group("capacity benchmark (bench/; off by default)")
    bench.add_argument(
        "--bench-dither",
        action="store_true",
        help="make every caller frame unique (lowest bits of its first 48 bytes)",
    )
    bench.add_argument(
        "--bench-frames",
        type=Path,
        metavar="FILE",
        help="with --bench-dither: write KEY DUE SENT (monotonic s) per caller frame",
    )
    bench.add_argument(
        "--bench-direct",
        metavar="URL",
        help="with --bench-dither: also stream each frame straight to this fake URL "
        "(?bench=direct) as input_audio_buffer.append, a baseline",
    )
    bench.add_argument(
        "--bench-direct-every",
        type=int,
        default=1,
        metavar="N",
        help="only calls 0, N, 2N... stream the direct baseline (default 1: all)",
    )
    meas.add_argument(
        "--event-loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="auto: uvloop when installed",
    )


def load_recordings(names: list[str]) -> list[Recording]:
    """Recordings from files, directories of them, or packaged call names.

    Raises:
        ValueError: a name that is none of these, or a file that is not a recording.
    """
    out = []
    for name in names:
        path = Path(name)
        if path.is_dir():
            files = sorted(f for f in path.iterdir() if f.suffix in (".jsonl", ".json"))
            if not files:
                raise ValueError(f"{name}: no .jsonl or .json recordings in this directory")
            out += [load_recording(f) for f in files]
        elif path.exists():
            out.append(load_recording(path))
        else:
            try:
                out.append(packaged_call(name))
            except FileNotFoundError:
                raise ValueError(f"{name}: no such file, directory or packaged call") from None
    return out


def _secret(value: str | None, path: Path | None, what: str) -> str | None:
    if path is None:
        return value
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    if not text:
        raise ValueError(f"the {what} file {path} is empty")
    return text


def _params(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--param wants NAME=VALUE, not {item!r}")
        out[name] = value
    return out


def _runner(choice: str) -> Callable[[Coroutine[Any, Any, T]], T]:
    """Run on the event loop ``--event-loop`` names; ``auto`` is the one ``serve`` uses."""
    factory = None if choice == "asyncio" else event_loop_factory()
    if choice == "uvloop" and factory is None:
        raise ValueError("--event-loop uvloop: uvloop is not installed")

    def run(coro: Coroutine[Any, Any, T]) -> T:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coro)

    return run


def run(args: argparse.Namespace) -> int:
    """A client: no server settings and no ``.env`` are read."""
    setup_logging(args.log_level)
    try:
        recordings = load_recordings(args.recordings)
        progress = None
        if args.progress != "off":
            live = args.progress == "live" or (args.progress == "auto" and sys.stdout.isatty())
            progress = Progress(sys.stdout, live=live)
        options = ReplayOptions(
            recordings=recordings,
            webhook_url=args.webhook,
            ws_url=args.ws,
            auth_token=_secret(args.auth_token, args.auth_token_file, "auth token"),
            token_secret=_secret(args.token_secret, args.token_secret_file, "token secret"),
            token_ttl_s=args.token_ttl,
            connect_to=args.connect_to,
            account_sid=args.account_sid,
            from_=args.from_,
            to=args.to,
            parameters=_params(args.param),
            concurrency=args.concurrency,
            ramp=args.ramp,
            calls=args.calls,
            duration_s=args.duration,
            loop=args.loop,
            call_duration_s=args.call_duration,
            call_timeout_s=args.timeout,
            speed=args.speed,
            tail_ms=args.tail_ms,
            network=Network(
                down_ms=args.down_ms,
                up_ms=args.up_ms,
                jitter_ms=args.jitter_ms,
                playout_ms=args.playout_ms,
                seed=args.seed,
            ),
            speech_threshold=args.speech_threshold,
            turn_gap_ms=args.turn_gap_ms,
            wav_dir=args.wav_dir,
            progress=progress,
            bench_dither=args.bench_dither,
            bench_frames=FrameLog() if args.bench_frames is not None else None,
            bench_direct_url=args.bench_direct,
            bench_direct_every=args.bench_direct_every,
        )
        options.check()
        run = _runner(args.event_loop)
    except ValueError as exc:
        print(f"voicebridge replay: error: {exc}", file=sys.stderr)
        return 2
    try:
        report = run(run_replay(options))
    except ValueError as exc:  # a recording the schedule cannot play
        print(f"voicebridge replay: error: {exc}", file=sys.stderr)
        return 2
    for line in report.table():
        print(line)
    if options.bench_frames is not None:
        try:
            options.bench_frames.write(args.bench_frames)
        except OSError as exc:
            print(f"voicebridge replay: cannot write {args.bench_frames}: {exc}", file=sys.stderr)
            return 1
    if args.json is not None:
        try:
            args.json.write_text(json.dumps(report.as_json(), indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            print(f"voicebridge replay: cannot write {args.json}: {exc.strerror}", file=sys.stderr)
            return 1
    return report.exit_code
