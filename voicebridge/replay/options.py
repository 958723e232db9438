"""What one ``voicebridge replay`` run does: its options, validated, and its hard caps."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from voicebridge.replay.progress import Progress
from voicebridge.twilio_sim.bench import FrameLog
from voicebridge.twilio_sim.emulator import Network
from voicebridge.twilio_sim.recordings import Recording
from voicebridge.twilio_sim.script import CallScript

__all__ = [
    "CALL_GRACE_S",
    "MAX_CALLS",
    "MAX_RUN_S",
    "NORMAL_CLOSE",
    "WEBHOOK_TIMEOUT_S",
    "ReplayOptions",
    "call_timeout_s",
]

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
