"""A call's upstream side: owning the Realtime connection, pumping it, replacing it.

``upstream`` opens the connection (through the injected ``ConnectUpstream``), asks for the
session, and runs ``upstream-in``, ``upstream-out``, ``upstream-watch`` and, once the session
is confirmed, ``session-clock`` in a nested TaskGroup. A connection lost mid-call is
replaced once (``UPSTREAM_RECONNECT``); at the session's age limit (``SESSION_LIMIT_S``)
the call either ends with a closing line or continues in a fresh session, renewed at the
first pause in the conversation within ``RENEW_WINDOW_S`` of the limit (at the limit at the
latest). Either way the fresh session is seeded with the call so far (``CallCore``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from voicebridge.config import Settings
from voicebridge.core import realtime as rt
from voicebridge.core.actions import Action
from voicebridge.core.call import CallCore
from voicebridge.core.stall import StallWatch
from voicebridge.errors import ProtocolError, UpstreamError
from voicebridge.server.call_log import CallLog
from voicebridge.server.clock import now_ms, now_s
from voicebridge.server.lifetime import CallEnded, Renew, UpstreamLost, first
from voicebridge.server.queues import FrameQueue
from voicebridge.server.upstream import ConnectUpstream, UpstreamClosed, UpstreamConnection

__all__ = ["RENEW_WINDOW_S", "UpstreamSide"]

# A planned renewal looks for a pause from this long before SESSION_LIMIT_S (at most half
# of it): a minute is several turns, so a pause nearly always comes.
RENEW_WINDOW_S = 60.0
PAUSE_POLL_S = 0.1


class UpstreamSide:
    """The upstream connection's owner and the upstream queue's consumer."""

    def __init__(
        self,
        connect: ConnectUpstream,
        settings: Settings,
        core: CallCore,
        log: CallLog,
        apply: Callable[[list[Action]], None],
        upstream_q: FrameQueue[str],
        observe: Callable[[str, float], None],
        request_close: Callable[[str], None],
    ) -> None:
        self.connect = connect
        self.settings = settings
        self.core = core
        self.log = log
        self.apply = apply
        self.upstream_q = upstream_q
        self.observe = observe
        self.request_close = request_close
        # Open with upstream-out running: twilio-in may write to it directly (_send_now).
        self.conn: UpstreamConnection | None = None
        # Wakes the wait for session.updated; whether the session is ready is the core's.
        self._confirmed: asyncio.Future[None] | None = None

    async def upstream(self) -> None:
        """Open the upstream, pump it, and replace it once if it is lost mid-call."""
        reconnects = 1 if self.settings.upstream_reconnect else 0
        deadline = self.settings.upstream_connect_timeout_s
        while True:
            conn = await self._open(deadline)
            lost: UpstreamLost | None = None
            renew = False
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self.upstream_in(conn), name="upstream-in")
                    tg.create_task(self.upstream_out(conn), name="upstream-out")
                    tg.create_task(self.upstream_watch(), name="upstream-watch")
                    await self._wait_confirmed()
                    tg.create_task(self._session_clock(), name="session-clock")
            except* UpstreamLost as group:
                lost = first(group, UpstreamLost)
            except* Renew:
                renew = True
            finally:
                self.conn = None
                await conn.close()
            if lost is not None:
                if reconnects == 0 or self.core.closing is not None:
                    raise CallEnded(f"upstream_lost: {lost}", failed=True)
                reconnects -= 1
                self.log.warning("upstream lost (%s): opening a fresh session", lost)
            elif renew:
                paused = self.core.at_pause(now_ms())
                self.log.info(
                    "upstream session at its age limit: continuing in a fresh one (%s)",
                    "at a pause" if paused else "no pause came",
                )
            self.core.new_session(announce=lost is not None, renewal=renew)
            self.upstream_q.drain_control()  # meant for the session that is gone
            deadline = self.settings.reconnect_timeout_s

    async def _open(self, deadline: float) -> UpstreamConnection:
        began = now_ms()
        try:
            conn = await self.connect(self.settings, deadline)
            self.observe("upstream_connect", now_ms() - began)
        except UpstreamError as exc:
            if exc.config_error:
                self.log.error("configuration error: %s", exc)
            reason = "auth" if exc.config_error else "refused" if exc.status else "unreachable"
            raise self._never_connected(reason, str(exc)) from None
        try:
            await conn.send(rt.session_update(self.core.session_config, self.core.next_event_id()))
        except UpstreamClosed as exc:
            await conn.close()
            raise self._never_connected("closed", str(exc)) from None
        return conn

    def _never_connected(self, reason: str, detail: str) -> CallEnded:
        """Log and count an upstream that never opened (``reason``: ``CONNECT_FAILURES``)."""
        self.core.stats.upstream_connect_failures[reason] += 1
        stats = self.core.stats
        which = "a fresh upstream" if stats.reconnects or stats.renewals else "the upstream"
        self.log.warning("%s never connected (%s): %s", which, reason, detail)
        if reason == "not_confirmed":
            return CallEnded("session_not_confirmed", failed=True)
        return CallEnded(f"upstream_connect_failed: {detail}", failed=True)

    async def _wait_confirmed(self) -> None:
        """Until the core has seen the session confirmed, within the connect timeout."""
        if self.core.session_ready:
            return
        self._confirmed = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(self.settings.upstream_connect_timeout_s):
                await self._confirmed
        except TimeoutError:
            timeout_s = self.settings.upstream_connect_timeout_s
            detail = f"no session.updated within {timeout_s:g} s"
            raise self._never_connected("not_confirmed", detail) from None
        finally:
            self._confirmed = None

    async def upstream_in(self, conn: UpstreamConnection) -> None:
        while True:
            try:
                text = await conn.recv()
            except UpstreamClosed as exc:
                raise UpstreamLost(str(exc)) from None
            try:
                event = rt.parse_realtime(text)
            except ProtocolError as exc:
                self.core.count_upstream_error(f"bad_event:{exc.reason}")
                self.log.once(f"rt:{exc.reason}", f"bad event from the Realtime API ignored: {exc}")
                continue
            actions = self.core.receive_realtime(event, now_ms())
            if isinstance(event, rt.ErrorEvent):
                self._log_upstream_error(event)
            elif isinstance(event, rt.ResponseDone) and event.status in ("failed", "incomplete"):
                self._log_response(event)
            self.apply(actions)
            confirmed = self._confirmed
            if confirmed is not None and self.core.session_ready and not confirmed.done():
                confirmed.set_result(None)

    def _log_upstream_error(self, err: rt.ErrorEvent) -> None:
        if err.code == "response_cancel_not_active":
            # A race with the response's own end; harmless.
            self.log.debug("upstream: %s", err.message)
        else:
            self.log.warning(
                "upstream error %s (%s) for event %s: %s",
                err.code,
                err.type,
                err.event_id,
                err.message,
            )

    def _log_response(self, done: rt.ResponseDone) -> None:
        details = done.status_details or {}
        error = details.get("error") if isinstance(details.get("error"), dict) else {}
        self.log.warning(
            "response %s %s: %s",
            done.response_id,
            done.status,
            details.get("reason") or (error or {}).get("message") or "no reason given",
        )

    async def upstream_out(self, conn: UpstreamConnection) -> None:
        # No timer per send (it cost about 5 % of the CPU, bench/RESULTS.md): a peer that
        # stops reading is caught by its unanswered pings (upstream.py), or by upstream_watch
        # when a full send buffer holds the pings back too.
        self.conn = conn
        try:
            while True:
                await conn.send(await self.upstream_q.get())
        except UpstreamClosed as exc:
            raise UpstreamLost(str(exc)) from None
        finally:
            self.conn = None

    async def upstream_watch(self) -> None:
        """End a connection whose sends have made no progress for the stall timeout."""
        watch = StallWatch(self.settings.upstream_stall_timeout_s * 1000.0)
        while True:
            await asyncio.sleep(self.settings.upstream_stall_timeout_s / 4)
            queue = self.upstream_q
            if watch.check(queue.taken, queue.waiting(), now_ms()):
                self.conn = None
                stuck_s = watch.stuck_for(now_ms()) / 1000.0
                raise UpstreamLost(f"stalled: no frame sent for {stuck_s:.1f} s")

    async def _session_clock(self) -> None:
        # The upstream cuts sessions at 60 minutes, mid-sentence and without warning.
        limit = self.settings.session_limit_s
        if self.settings.session_limit_action != "renew":
            await asyncio.sleep(limit)
            self.request_close("session_limit")
            return
        window = min(RENEW_WINDOW_S, limit / 2)
        await asyncio.sleep(limit - window)
        deadline = now_s() + window
        # Polled: "the caller has heard the end of the answer" is a projection, not an event.
        while not self.core.at_pause(now_ms()) and now_s() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(PAUSE_POLL_S)
        self.conn = None  # frames from now on wait for the fresh session
        raise Renew()
