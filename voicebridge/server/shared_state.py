"""What one process shares with others: admission state (its memory, or Redis with
``REDIS_URL``) and, under ``serve --workers``, the ``/metrics`` of its sibling workers.

Without ``REDIS_URL`` each process admits against its own limit: ``MAX_CALLS``, or under
``--workers`` its share of it. With it, every instance and worker admits against Redis
(``server/redis_state.py``), and this process's memory is the fallback while Redis is away.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from voicebridge.config import Settings
from voicebridge.core.admission import Admission
from voicebridge.core.call_sids import CallSidStore, MemoryCallSids
from voicebridge.core.outcomes import MemoryOutcomes, OutcomeStore
from voicebridge.core.slots import CallSlots, MemorySlots, worker_share
from voicebridge.server.redis_state import (
    RedisCallSids,
    RedisCollector,
    RedisOutcomes,
    RedisSlots,
    RedisState,
)
from voicebridge.server.worker_peers import MetricsPeers, Worker

__all__ = ["SharedState"]


@dataclass
class SharedState:
    admission: Admission  # this process's own slots (the fallback with Redis)
    slots: CallSlots
    call_sids: CallSidStore
    outcomes: OutcomeStore
    redis: RedisState | None = None
    peers: MetricsPeers | None = None

    @classmethod
    def build(
        cls, settings: Settings, worker: Worker | None, local_outcomes: MemoryOutcomes
    ) -> SharedState:
        """The stores for ``settings``; ``worker`` is this process's place under --workers."""
        local_max = settings.max_calls
        if worker is not None:
            local_max = worker_share(settings.max_calls, worker.count, worker.index)
        admission = Admission(local_max, settings.stream_token_ttl_s)
        local_sids = MemoryCallSids(settings.call_sid_memory_s, time.monotonic)
        shared_secret = not settings.stream_token_secret_generated or worker is not None
        peers = MetricsPeers(worker) if worker is not None and worker.count > 1 else None
        if not settings.redis_url:
            slots = MemorySlots(admission, time.monotonic, shared_secret=shared_secret)
            return cls(admission, slots, local_sids, local_outcomes, peers=peers)
        # Workers of one instance share its id: MAX_CALLS holds for all of them together.
        instance_id = worker.instance_id if worker is not None else secrets.token_hex(6)
        redis = RedisState(settings.redis_url, instance_id, admission, local_sids)
        slots_r = RedisSlots(
            redis,
            settings.max_calls,
            settings.max_calls_total,
            settings.stream_token_ttl_s,
            shared_secret=shared_secret,
        )
        return cls(
            admission,
            slots_r,
            RedisCallSids(redis),
            RedisOutcomes(redis, local_outcomes),
            redis,
            peers,
        )

    def register(self, registry: CollectorRegistry) -> None:
        if self.redis is not None:
            registry.register(RedisCollector(self.redis))

    def status(self) -> dict[str, object]:
        """For ``/readyz``: where admission state lives, and whether it can be reached."""
        if self.redis is None:
            return {"shared_state": "memory"}
        return self.redis.status()

    async def exposition(self, registry: CollectorRegistry) -> bytes:
        """``/metrics``: this process's, or with sibling workers, all of theirs summed."""
        if self.peers is None:
            return generate_latest(registry)
        return await self.peers.exposition(registry)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        """While the app serves: the Redis keeper, and this worker's metrics socket."""
        async with contextlib.AsyncExitStack() as stack:
            if self.peers is not None:
                registry = app.state.voicebridge.metrics.registry
                await stack.enter_async_context(self.peers.serving(registry))
            if self.redis is None:
                yield
                return
            stack.push_async_callback(self.redis.close)
            async with asyncio.TaskGroup() as tg:
                keeper = tg.create_task(self.redis.keep(), name="redis-keeper")
                try:
                    yield
                finally:
                    keeper.cancel()
