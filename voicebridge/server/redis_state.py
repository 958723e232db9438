"""Admission state in Redis (``REDIS_URL``): call slots, used tokens, opened CallSids, outcomes.

Every instance (and every worker) sees every reservation, call and token, so a stream may land
anywhere: its reservation moves there and frees the reserving instance at once
(``server/redis_scripts.py`` has the keys and the atomic scripts).

Redis trouble never touches a call in progress: nothing in a call waits on Redis after its
``start``. While Redis cannot be reached, new calls are admitted against this process's own
limits (fail open: a phone line should not die because a cache blipped); the episode is
logged once when it begins and once when it ends, counted, and shown on ``/readyz`` and
``/metrics``. A probe every ``PROBE_S`` brings Redis back without a restart, re-adding the
calls admitted meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from voicebridge.core.admission import Admission, TokenError
from voicebridge.core.call_sids import MemoryCallSids
from voicebridge.core.outcomes import MemoryOutcomes, Outcome
from voicebridge.core.slots import BUSY, CLUSTER_BUSY, Refusal
from voicebridge.logs import mask_url
from voicebridge.server import redis_scripts as lua
from voicebridge.server.metrics import labelled_counter

__all__ = ["RedisCallSids", "RedisCollector", "RedisOutcomes", "RedisSlots", "RedisState"]

log = logging.getLogger(__name__)

# On the call path: a Redis on the same network answers in well under a millisecond, so a
# few hundred ms means it is down, and the call goes on without it.
TIMEOUT_S = 0.3  # connect, read, and the wait for a pooled connection
POOL_SIZE = 32  # connections per process; a webhook or `start` holds one for one round trip
LEASE_S = 15.0  # a call's entry outlives a crashed instance by at most this
RENEW_S = 5.0  # leases renewed this often
PROBE_S = 0.5  # while Redis is unreachable: how soon a recovery is noticed
_SKEW_MS = 5000  # a used token is remembered this much past its expiry (clocks differ)
_ERRORS = (RedisError, OSError, TimeoutError)


class RedisState:
    """The client, its health, and the keeper (lease renewal, probing while degraded)."""

    def __init__(
        self, url: str, instance_id: str, local: Admission, local_sids: MemoryCallSids
    ) -> None:
        self.url = url
        self.instance_id = instance_id
        self.local = local  # this process's own slots: the calls to renew, the fallback
        self.local_sids = local_sids
        pool: BlockingConnectionPool = BlockingConnectionPool.from_url(
            url,
            max_connections=POOL_SIZE,
            timeout=TIMEOUT_S,
            socket_timeout=TIMEOUT_S,
            socket_connect_timeout=TIMEOUT_S,
            decode_responses=True,
            retry=Retry(NoBackoff(), 0),  # a failure is an answer: the caller falls back
        )
        self.client = Redis.from_pool(pool)  # closing the client closes the pool
        self.degraded = False
        self.since = 0.0
        self.episodes = 0
        self.errors: Counter[str] = Counter()  # failed operations, by operation
        self.fail_open: Counter[str] = Counter()  # decided on local limits, by step
        self.sids_meanwhile: set[str] = set()  # CallSids given a call while degraded
        self._went_down = asyncio.Event()
        self.keys = _Keys(instance_id)
        self.scripts = {
            name: self.client.register_script(text)
            for name, text in (
                ("reserve", lua.RESERVE),
                ("claim", lua.CLAIM),
                ("lease", lua.LEASE),
                ("load", lua.LOAD),
                ("release", lua.RELEASE),
            )
        }

    async def run(self, key: str, keys: list[str], args: list[Any]) -> Any:
        """Run a script; raises one of ``_ERRORS`` (the caller falls back)."""
        async with asyncio.timeout(TIMEOUT_S * 2):
            return await self.scripts[key](keys=keys, args=args)

    def failed(self, op: str, exc: BaseException) -> None:
        self.errors[op] += 1
        if self.degraded:
            return
        self.degraded, self.since = True, time.monotonic()
        self._went_down.set()
        self.episodes += 1
        log.warning(
            "Redis at %s cannot be reached (%s during %s): new calls are admitted on this "
            "process's own limits until it is back; calls in progress go on",
            mask_url(self.url),
            type(exc).__name__,
            op,
        )

    def _recovered(self) -> None:
        log.warning(
            "Redis at %s is back after %.1f s (%d webhooks, %d streams admitted meanwhile)",
            mask_url(self.url),
            time.monotonic() - self.since,
            self.fail_open["reserve"],
            self.fail_open["claim"],
        )
        self.degraded = False
        self.sids_meanwhile.clear()

    def status(self) -> dict[str, object]:
        """For ``/readyz``: which store, and whether it is reachable."""
        if not self.degraded:
            return {"shared_state": "redis"}
        return {
            "shared_state": "redis unreachable: admitting on local limits",
            "degraded_s": round(time.monotonic() - self.since, 1),
        }

    async def keep(self) -> None:
        """Renew this process's leases; while degraded, probe until Redis answers."""
        await self.renew(renew_only=False)  # at start: a log line now if Redis is away
        while True:
            if self.degraded:
                await asyncio.sleep(PROBE_S)
            else:  # renew every RENEW_S, or probe at once when an operation fails
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(RENEW_S):
                        await self._went_down.wait()
            self._went_down.clear()
            await self.renew(renew_only=not self.degraded)

    async def renew(self, *, renew_only: bool) -> None:
        calls = sorted(self.local.active())
        try:
            await self.run(
                "lease",
                self.keys.sets(),
                [int(LEASE_S * 1000), self.keys.ttl_ms, "XX" if renew_only else "ALL", *calls],
            )
            if self.sids_meanwhile:
                # Calls admitted while Redis was away: their CallSids open no second call.
                ttl_ms = int(self.local_sids.ttl_s * 1000)
                async with asyncio.timeout(TIMEOUT_S * 2), self.client.pipeline() as pipe:
                    for sid in self.sids_meanwhile:
                        pipe.set(self.keys.call(sid), "1", px=ttl_ms, nx=True)
                    await pipe.execute()
        except _ERRORS as exc:
            self.failed("lease", exc)
            return
        if self.degraded:
            self._recovered()

    async def close(self) -> None:
        await self.client.aclose()


class _Keys:
    def __init__(self, instance_id: str) -> None:
        p = lua.PREFIX
        self.reserved, self.active = p + "reserved", p + "active"
        self.instance = f"{p}instance:{instance_id}"
        # Renewed with every lease: the set goes an hour after its instance does.
        self.ttl_ms = 3600 * 1000

    def sets(self) -> list[str]:
        return [self.reserved, self.active, self.instance]

    @staticmethod
    def owner(call_sid: str) -> str:
        return f"{lua.PREFIX}owner:{call_sid}"

    @staticmethod
    def call(call_sid: str) -> str:
        return f"{lua.PREFIX}call:{call_sid}"

    @staticmethod
    def token(nonce: str) -> str:
        return f"{lua.PREFIX}token:{nonce}"

    @staticmethod
    def outcome(call_sid: str) -> str:
        return f"{lua.PREFIX}outcome:{call_sid}"


class RedisSlots:
    """:class:`~voicebridge.core.slots.CallSlots` in Redis: ``MAX_CALLS`` for this instance
    (all its workers), ``MAX_CALLS_TOTAL`` for the cluster; local limits while degraded."""

    def __init__(
        self,
        state: RedisState,
        max_calls: int,
        max_total: int,
        token_ttl_s: float,
        *,
        shared_secret: bool,
    ) -> None:
        self.state = state
        self.max_calls = max_calls
        self.max_total = max_total
        self.token_ttl_ms = int(token_ttl_s * 1000)
        self.shared_secret = shared_secret

    async def reserve(self, call_sid: str) -> Refusal | None:
        s = self.state
        if not s.degraded:
            keys = [*s.keys.sets(), s.keys.owner(call_sid)]
            args = [call_sid, self.token_ttl_ms, self.max_calls, self.max_total]
            try:
                answer = await s.run("reserve", keys, [*args, s.instance_id, s.keys.ttl_ms])
            except _ERRORS as exc:
                s.failed("reserve", exc)
            else:
                return None if answer == "ok" else CLUSTER_BUSY if answer == CLUSTER_BUSY else BUSY
        s.fail_open["reserve"] += 1
        return None if s.local.reserve(call_sid, time.monotonic()) else BUSY

    async def claim(self, call_sid: str, nonce: str, expires: float) -> None:
        s = self.state
        if not s.degraded:
            keys = [*s.keys.sets(), s.keys.owner(call_sid)]
            token_ms = max(0, int((expires - time.time()) * 1000)) + _SKEW_MS
            args = [call_sid, token_ms, int(LEASE_S * 1000), self.max_calls, self.max_total]
            args += [s.keys.ttl_ms, "1" if self.shared_secret else "0"]
            try:
                answer = await s.run("claim", [*keys, s.keys.token(nonce)], args)
            except _ERRORS as exc:
                s.failed("claim", exc)
            else:
                if answer != "ok":
                    raise TokenError(str(answer))
                s.local.adopt(call_sid, nonce, time.monotonic())
                return
        s.fail_open["claim"] += 1
        # Without Redis the reservation may be anywhere: a genuine token takes a local slot.
        s.local.claim(call_sid, nonce, time.monotonic(), shared_secret=True)

    async def release(self, call_sid: str) -> None:
        s = self.state
        s.local.release(call_sid)
        if s.degraded:
            return  # its lease lapses within LEASE_S
        try:
            await s.run("release", [s.keys.active, s.keys.instance], [call_sid])
        except _ERRORS as exc:
            s.failed("release", exc)

    async def has_room(self) -> bool:
        s = self.state
        if not s.degraded:
            try:
                return int(await s.run("load", s.keys.sets(), [])) < self.max_calls
            except _ERRORS as exc:
                s.failed("load", exc)
        return s.local.has_room(time.monotonic())


class RedisCallSids:
    """:class:`~voicebridge.core.call_sids.CallSidStore` in Redis: a CallSid opens one call
    in the whole cluster (``SET NX``); this process's memory while degraded."""

    def __init__(self, state: RedisState) -> None:
        self.state = state

    async def had_call(self, call_sid: str) -> bool:
        s = self.state
        if not s.degraded:
            try:
                async with asyncio.timeout(TIMEOUT_S * 2):
                    if await s.client.exists(s.keys.call(call_sid)):
                        return True
            except _ERRORS as exc:
                s.failed("call_sid", exc)
        return await s.local_sids.had_call(call_sid)

    async def claim(self, call_sid: str) -> bool:
        s = self.state
        if not s.degraded:
            ttl_ms = int(s.local_sids.ttl_s * 1000)
            try:
                async with asyncio.timeout(TIMEOUT_S * 2):
                    first = await s.client.set(s.keys.call(call_sid), "1", px=ttl_ms, nx=True)
            except _ERRORS as exc:
                s.failed("call_sid", exc)
            else:
                await s.local_sids.claim(call_sid)  # remembered here too, for an outage
                return bool(first)
        if not await s.local_sids.claim(call_sid):
            return False
        if len(s.sids_meanwhile) < 100_000:  # pushed to Redis when it is back
            s.sids_meanwhile.add(call_sid)
        return True


class RedisOutcomes:
    """:class:`~voicebridge.core.outcomes.OutcomeStore` in Redis: Twilio's after-stream
    request may reach another instance than the call did. Kept here while degraded."""

    def __init__(self, state: RedisState, fallback: MemoryOutcomes) -> None:
        self.state = state
        self.fallback = fallback

    async def put(self, call_sid: str, outcome: Outcome) -> None:
        s = self.state
        if not s.degraded:
            try:
                async with asyncio.timeout(TIMEOUT_S * 2):
                    ttl_ms = int(self.fallback.ttl_s * 1000)
                    await s.client.set(s.keys.outcome(call_sid), outcome.encode(), px=ttl_ms)
                return
            except _ERRORS as exc:
                s.failed("outcome", exc)
        await self.fallback.put(call_sid, outcome)

    async def take(self, call_sid: str) -> Outcome | None:
        kept = await self.fallback.take(call_sid)
        s = self.state
        if kept is not None or s.degraded:
            return kept
        try:
            async with asyncio.timeout(TIMEOUT_S * 2):
                text = await s.client.getdel(s.keys.outcome(call_sid))
        except _ERRORS as exc:
            s.failed("outcome", exc)
            return None
        return Outcome.decode(text) if isinstance(text, str) else None


class RedisCollector(Collector):
    """The shared store's health on ``/metrics``."""

    def __init__(self, state: RedisState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        s = self.state
        yield GaugeMetricFamily(
            "voicebridge_redis_degraded",
            "1 while Redis cannot be reached and calls are admitted on this process's limits",
            value=int(s.degraded),
        )
        yield CounterMetricFamily(
            "voicebridge_redis_degraded_episodes",
            "times Redis became unreachable",
            value=s.episodes,
        )
        yield labelled_counter(
            "voicebridge_redis_errors", "Redis operations that failed", "operation", s.errors
        )
        yield labelled_counter(
            "voicebridge_redis_fail_open",
            "webhooks (reserve) and streams (claim) admitted on local limits: Redis unreachable",
            "step",
            {step: s.fail_open[step] for step in ("reserve", "claim")},
        )
