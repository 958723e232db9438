"""Call events for the business's backend: ``call.started``, ``call.ended``,
``call.transferred``, POSTed signed to ``CALL_EVENTS_URL``.

Delivery never delays or breaks a call: :meth:`CallEvents.emit` only queues (bounded,
``CALL_EVENTS_QUEUE``; an event that finds it full is dropped and counted) and one worker
task delivers, one event at a time in order. A failed attempt (no answer, 408, 429, 5xx) is
retried with exponential backoff and full jitter until ``CALL_EVENTS_RETRY_S`` has passed
since the first; another 4xx is final. Each attempt is signed afresh (its timestamp within
the receiver's tolerance) and carries the event's ``id`` for de-duplication. Failures are
counted on ``/metrics`` and logged once per episode (and once when delivery recovers).
:meth:`CallEvents.aclose` delivers what it can until a deadline, then drops the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from voicebridge.config import Settings
from voicebridge.core.signing import SIGNATURE_HEADER, sign
from voicebridge.errors import OutboundError
from voicebridge.logs import mask_url
from voicebridge.server.http_client import OutboundHttp

__all__ = ["EVENT_TYPES", "CallEvents"]

log = logging.getLogger(__name__)

EVENT_TYPES = ("call.started", "call.ended", "call.transferred")
ATTEMPT_TIMEOUT_S = 5.0
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
FLUSH_S = 3.0  # the app's shutdown: queued events get this long (SHUTDOWN_TIMEOUT_S's margin)
_RETRYABLE = frozenset({408, 425, 429})


class CallEvents:
    """The queue and its delivery worker (run by :meth:`running`, the app's lifespan)."""

    def __init__(
        self,
        settings: Settings,
        http: OutboundHttp,
        registry: CollectorRegistry | None = None,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.url = settings.call_events_url
        self._secret = settings.signing_secret
        self._retry_s = settings.call_events_retry_s
        self._http = http
        self._jitter = jitter
        self._queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(settings.call_events_queue)
        self._deadline: float | None = None  # closing: nothing is tried past this
        self._closed = False
        self._worker: asyncio.Task[None] | None = None
        self._failing = False  # an episode of failed attempts is under way
        self._failed_attempts = 0
        registry = registry if registry is not None else CollectorRegistry()
        self.sent = Counter(
            "voicebridge_call_events",
            "call events, by type and result (delivered, failed: retries ran out, dropped: "
            "the queue was full or the service stopped)",
            ["event", "result"],
            registry=registry,
        )
        self.attempt_failures = Counter(
            "voicebridge_call_event_attempt_failures",
            "delivery attempts of call events that failed (each retry counts)",
            registry=registry,
        )

    def count(self, event: str, result: str) -> float:
        """One counter's value (the tests, the doctor)."""
        value: float = self.sent.labels(event, result)._value.get()
        return value

    # -- the call's side: never waits ----------------------------------------------------

    def emit(self, event: str, data: dict[str, Any]) -> None:
        """Queue an event (``event`` one of :data:`EVENT_TYPES`); drop it if the queue is full."""
        body = json.dumps(
            {
                "type": event,
                "id": "evt_" + secrets.token_hex(12),
                "created_at": time.time(),
                **data,
            },
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        if self._closed:
            self.sent.labels(event, "dropped").inc()
            return
        try:
            self._queue.put_nowait((event, body))
        except asyncio.QueueFull:
            self.sent.labels(event, "dropped").inc()
            if not self._failing:
                log.warning("call events: %d waiting, dropping new ones", self._queue.qsize())
                self._failing = True

    # -- delivery --------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Deliver while the app serves; on the way out, flush for up to :data:`FLUSH_S`."""
        async with asyncio.TaskGroup() as tg:
            self._worker = tg.create_task(self._deliver_all(), name="call-events")
            try:
                yield
            finally:
                await self.aclose(asyncio.get_running_loop().time() + FLUSH_S)

    async def aclose(self, deadline: float) -> None:
        """Take no more events; deliver the queued ones until ``deadline`` (the loop's clock,
        as ``asyncio.timeout_at``), then drop what is left (counted). Safe to call twice."""
        self._closed = True
        self._deadline = deadline if self._deadline is None else min(deadline, self._deadline)
        if self._worker is not None and not self._worker.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(self._deadline):
                    await self._queue.join()
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        left = 0
        while not self._queue.empty():
            event, _ = self._queue.get_nowait()
            self._queue.task_done()
            self.sent.labels(event, "dropped").inc()
            left += 1
        if left:
            log.warning("call events: %d not delivered before shutdown (dropped)", left)

    async def _deliver_all(self) -> None:
        while True:
            event, body = await self._queue.get()
            try:
                result = await self._deliver(body)
                self.sent.labels(event, result).inc()
            finally:
                self._queue.task_done()

    async def _deliver(self, body: bytes) -> str:
        """Try until delivered or out of time: ``delivered`` or ``failed``."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._retry_s
        backoff = FIRST_BACKOFF_S
        while True:
            end = give_up if self._deadline is None else min(give_up, self._deadline)
            timeout = min(ATTEMPT_TIMEOUT_S, end - loop.time())
            if timeout <= 0:
                return "failed"
            why, final = await self._attempt(body, timeout)
            if why is None:
                if self._failing:
                    log.info(
                        "call events delivered again (after %d failed attempts)",
                        self._failed_attempts,
                    )
                self._failing, self._failed_attempts = False, 0
                return "delivered"
            self.attempt_failures.inc()
            self._failed_attempts += 1
            if not self._failing:
                self._failing = True
                log.warning(
                    "call events to %s failing (%s): retrying each for up to %g s; counted "
                    "on /metrics, logged again once they get through",
                    mask_url(self.url),
                    why,
                    self._retry_s,
                )
            wait = self._jitter(0.0, backoff)  # full jitter: retries of many events spread
            backoff = min(backoff * 2, MAX_BACKOFF_S)
            if final or loop.time() + wait >= end:
                return "failed"
            await asyncio.sleep(wait)

    async def _attempt(self, body: bytes, within_s: float) -> tuple[str | None, bool]:
        """(None, _) when delivered; else (why, whether retrying is pointless)."""
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret.reveal(), int(time.time()), body),
        }
        try:
            answer = await self._http.post(
                self.url, content=body, headers=headers, timeout_s=within_s
            )
        except OutboundError as exc:
            return str(exc), False
        if answer.ok:
            return None, False
        final = 400 <= answer.status < 500 and answer.status not in _RETRYABLE
        return f"HTTP {answer.status}", final
