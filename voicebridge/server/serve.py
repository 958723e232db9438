"""Running the app under uvicorn, with voicebridge's own ``uvicorn.Server`` object."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
import threading
from collections.abc import Callable, Generator
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from voicebridge.config import Settings
from voicebridge.errors import ConfigError
from voicebridge.server.app import AppState, create_app
from voicebridge.server.http_edge import edge_protocol, raise_fd_limit
from voicebridge.server.worker_peers import Worker

__all__ = ["BridgeServer", "event_loop_factory", "listen", "serve", "serve_on", "uvicorn_config"]

log = logging.getLogger(__name__)


def uvicorn_config(settings: Settings, app: Starlette | None = None) -> uvicorn.Config:
    return uvicorn.Config(
        app if app is not None else create_app(settings),
        host=settings.host,
        port=settings.port,
        # Behind a PaaS router the scheme arrives as X-Forwarded-Proto; trust it only from
        # FORWARDED_ALLOW_IPS (uvicorn's convention; "*" where the router's address varies).
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        ws="websockets-sansio",
        ws_max_size=settings.max_message_bytes,  # Twilio's frames are a few hundred bytes
        ws_per_message_deflate=False,  # base64 audio barely compresses
        lifespan="on",  # the app's: the Redis keeper, a worker's metrics socket
        log_config=None,  # voicebridge configures logging itself
        server_header=False,
        # h11 with voicebridge's limits and deadlines rather than httptools, which has no
        # header size limit: see server/http_edge.py. Plain HTTP only, never a media frame.
        http=edge_protocol(settings),
        timeout_keep_alive=settings.http_keep_alive_timeout_s,
    )


class BridgeServer(uvicorn.Server):
    """uvicorn's server with voicebridge owning SIGTERM and SIGINT: a drain on one budget.

    uvicorn alone would close the listener and send 1012 to every call at once, then die
    "by signal". Here the first signal starts the drain (``server/shutdown.py``): not ready,
    new webhooks get the busy TwiML, streams whose webhook came before are still admitted;
    calls go on for up to DRAIN_TIMEOUT_S, then each hears a closing line and ends; any call
    left at the budget's cutoff is ended (``forced``); the server stops and the process exits
    0, all within SHUTDOWN_TIMEOUT_S. A second signal ends every call at once (``forced``);
    a third stops without waiting for anything.
    """

    def __init__(self, config: uvicorn.Config, state: AppState | None = None) -> None:
        super().__init__(config)
        self.app_state = state
        self._signals = 0
        self._drain: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler runs between bytecodes of the loop's thread: hand over, don't act.
        self._signals += 1
        name = signal.Signals(sig).name
        asyncio.get_running_loop().call_soon_threadsafe(self._signalled, name, self._signals)

    def _signalled(self, name: str, count: int) -> None:
        state = self.app_state
        loop = asyncio.get_running_loop()
        if state is None or count >= 3:
            log.warning("received %s again: stopping without waiting", name)
            self.force_exit = self.should_exit or count >= 3
            self.should_exit = True
        elif count == 2:
            log.warning("received %s again: ending every call now", name)
            state.shutdown.force(loop.time(), state.calls)
        else:
            plan = state.shutdown.plan
            log.warning(
                "received %s: draining (calls go on for up to %g s; exit within "
                "SHUTDOWN_TIMEOUT_S=%g s)",
                name,
                plan.drain_s,
                plan.budget_s,
            )
            state.begin_drain(loop.time())
            self._drain = loop.create_task(self.drain(), name="drain")

    async def drain(self) -> None:
        state = self.app_state
        assert state is not None
        shutdown = state.shutdown
        try:
            await shutdown.drain(state)
        finally:
            elapsed = asyncio.get_running_loop().time() - (shutdown.began or 0.0)
            # uvicorn's own wait for connections gets what is left of the budget (whole s).
            self.config.timeout_graceful_shutdown = int(shutdown.plan.server_grace_s(elapsed))
            self.should_exit = True


def listen(settings: Settings) -> socket.socket:
    """The listening socket on HOST:PORT, bound before the server starts.

    uvicorn would log its own bind error and exit 1; binding here first lets the message name
    the setting to change.

    Raises:
        ConfigError: HOST is not an address of this machine, or PORT is taken or privileged.
    """
    host, port = settings.host, settings.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn picks it
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart binds at once
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"PORT={port}: {host}:{port} is already in use by another process; "
                "stop it or choose another PORT"
            ) from exc
        if exc.errno == errno.EACCES:
            raise ConfigError(
                f"PORT={port}: this user may not listen on ports below 1024; choose another PORT"
            ) from exc
        raise ConfigError(
            f"HOST={host!r}: cannot listen there ({exc.strerror or exc}); give an address of "
            "this machine, or 0.0.0.0 for all of them"
        ) from exc
    return sock


async def serve(settings: Settings) -> None:
    """Serve until stopped (a signal drains first: :class:`BridgeServer`).

    Raises:
        ConfigError: the settings cannot serve real calls (no key for OpenAI), or HOST:PORT
            cannot be listened on.
    """
    settings.check_can_serve()
    with listen(settings) as sock:
        log.info("settings: %s", settings.describe())
        await serve_on(sock, settings)


async def serve_on(sock: socket.socket, settings: Settings, worker: Worker | None = None) -> None:
    """Serve on a bound socket: this process alone, or one of ``serve --workers``."""
    raise_fd_limit(settings)  # before uvicorn_config: the connection cap fits the new limit
    app = create_app(settings, worker=worker)
    state: AppState = app.state.voicebridge
    first = worker is None or worker.index == 0  # one set of start-up lines, not one a worker
    if first:
        state.guard.warn_at_startup()
    server = BridgeServer(uvicorn_config(settings, app), state)
    if first:  # uvicorn names the address only when it binds the socket itself
        log.info("listening on http://%s", _address(sock))
    await server.serve(sockets=[sock])


def _address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when installed (uvicorn[standard] brings it), else asyncio's.

    ``asyncio.run`` would always use the stdlib loop, so uvicorn's own choice of uvloop never
    applies to a server it does not create; bench/RESULTS.md measures the difference (about a
    quarter less CPU per frame at 150 calls, and far lower tail latency).
    """
    try:
        import uvloop  # an optional dependency: imported only to probe for it
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
