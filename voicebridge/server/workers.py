"""``serve --workers N``: N processes on one listening socket, each with its own event loop.

The supervisor binds HOST:PORT once and starts each worker with that socket (the kernel hands
each connection to one of them). SIGTERM or SIGINT is passed to every worker, which drains as
a single process does (``BridgeServer``); a second one stops them at once. A worker that
dies unasked is replaced; one that dies within ``EARLY_EXIT_S`` of its start (a setting it
cannot work with) stops the others, and its exit status is the supervisor's.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

from voicebridge.config import Settings
from voicebridge.errors import ConfigError
from voicebridge.logs import setup_logging
from voicebridge.server.serve import event_loop_factory, listen, serve_on
from voicebridge.server.worker_peers import Worker

__all__ = ["run_workers"]

log = logging.getLogger(__name__)

EARLY_EXIT_S = 5.0  # a worker gone this soon after its start will not do better if restarted


def run_workers(settings: Settings, count: int) -> int:
    """Run ``count`` workers until they have all exited; the exit status.

    Raises:
        ConfigError: HOST:PORT cannot be listened on, or the settings cannot serve.
    """
    settings.check_can_serve()
    if not settings.redis_url:
        log.warning(
            "%d workers without REDIS_URL: each admits against its share of MAX_CALLS=%d, and "
            "a call whose stream reaches another worker than its webhook holds a slot in both "
            "until its token expires (STREAM_TOKEN_TTL_S); set REDIS_URL to share the slots",
            count,
            settings.max_calls,
        )
    directory = tempfile.mkdtemp(prefix="voicebridge-workers-")
    instance_id = secrets.token_hex(6)
    try:
        with listen(settings) as sock:
            log.info("settings: %s", settings.describe())
            supervisor = _Supervisor(settings, sock, count, instance_id, directory)
            return supervisor.run()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class _Supervisor:
    def __init__(
        self, settings: Settings, sock: socket.socket, count: int, instance_id: str, directory: str
    ) -> None:
        self.settings = settings
        self.sock = sock
        self.workers = [Worker(i, count, instance_id, directory) for i in range(count)]
        # spawn, not fork: a fresh interpreter per worker, nothing inherited but the socket
        self.context = multiprocessing.get_context("spawn")
        self.procs: dict[int, BaseProcess] = {}
        self.started: dict[int, float] = {}
        self.stopping = False
        self.status = 0

    def run(self) -> int:
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            for worker in self.workers:
                self._start(worker)
            log.info("%d workers serving on one port", len(self.workers))
            while self.procs:
                sentinels = {p.sentinel: i for i, p in self.procs.items()}
                for ready in wait(list(sentinels), timeout=1.0):
                    if isinstance(ready, int):
                        self._exited(sentinels[ready])
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.status

    def _start(self, worker: Worker) -> None:
        proc = self.context.Process(
            target=_worker_main,
            args=(self.settings, self.sock, worker),
            name=f"voicebridge-worker-{worker.index}",
        )
        proc.start()
        self.procs[worker.index] = proc
        self.started[worker.index] = time.monotonic()

    def _exited(self, index: int) -> None:
        proc = self.procs.pop(index)
        proc.join()
        code = proc.exitcode or 0
        if self.stopping:
            self.status = self.status or (code if code > 0 else 0)
            return
        if time.monotonic() - self.started[index] < EARLY_EXIT_S:
            log.error("worker %d exited with %s at start-up: stopping the others", index, code)
            self.status = code if code > 0 else 1
            self._signal_all(signal.SIGTERM)
            self.stopping = True
            return
        log.error("worker %d exited with %s: starting another", index, code)
        self._start(self.workers[index])

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        # Workers have their own process group (a terminal's Ctrl-C reaches this process
        # only), so every signal is passed on once: the first drains, a second stops.
        self.stopping = True
        self._signal_all(sig)

    def _signal_all(self, sig: int) -> None:
        for proc in self.procs.values():
            if proc.pid is not None and proc.exitcode is None:
                os.kill(proc.pid, sig)


def _worker_main(settings: Settings, sock: socket.socket, worker: Worker) -> None:
    """A worker: its own logging, event loop and app, on the supervisor's socket."""
    os.setpgid(0, 0)
    setup_logging(
        settings.log_level,
        settings.log_format,
        wire=settings.log_wire,
        secrets=settings.secret_values(),
    )
    _exit_with_parent()
    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(serve_on(sock, settings, worker))
    except ConfigError as exc:  # as the single process reports it: one line, exit 2
        print(f"voicebridge: {exc}", file=sys.stderr)  # noqa: T201
        sys.exit(2)


def _exit_with_parent() -> None:
    """Drain (as on SIGTERM) if the supervisor dies without passing a signal on."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
