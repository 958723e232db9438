"""Admission state in a real Redis: two instances' stores side by side, an outage, a recovery."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.redis_server import RedisServer, running_redis
from voicebridge.core.admission import Admission, TokenError
from voicebridge.core.call_sids import MemoryCallSids
from voicebridge.core.outcomes import MemoryOutcomes, Outcome, OutcomeKind
from voicebridge.server.redis_state import (
    RedisCallSids,
    RedisOutcomes,
    RedisSlots,
    RedisState,
)

TTL = 60.0


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as server:
        yield server


class Instance:
    def __init__(self, url: str, name: str, max_calls: int = 3, max_total: int = 0) -> None:
        self.admission = Admission(max_calls, TTL)
        self.state = RedisState(url, name, self.admission, MemoryCallSids(3600.0, time.monotonic))
        self.slots = RedisSlots(self.state, max_calls, max_total, TTL, shared_secret=True)
        self.sids = RedisCallSids(self.state)
        self.outcomes = RedisOutcomes(self.state, MemoryOutcomes(60.0, 100, time.monotonic))

    async def admit(self, call_sid: str, nonce: str) -> None:
        await self.slots.claim(call_sid, nonce, time.time() + TTL)


@pytest.fixture
async def pair(redis: RedisServer) -> AsyncIterator[tuple[Instance, Instance]]:
    a, b = Instance(redis.url, "a"), Instance(redis.url, "b")
    yield a, b
    await a.state.close()
    await b.state.close()


async def test_a_stream_elsewhere_frees_the_reserving_instance(
    pair: tuple[Instance, Instance],
) -> None:
    """Three reservations on A claimed on B leave A with room at once; B is then full."""
    a, b = pair
    for n in range(3):
        assert await a.slots.reserve(f"CA{n}") is None
    assert await a.slots.reserve("CA3") == "busy"
    assert not await a.slots.has_room()
    for n in range(3):
        await b.admit(f"CA{n}", f"nonce{n}")
    assert await a.slots.has_room()
    assert await a.slots.reserve("CA3") is None
    assert not await b.slots.has_room()
    await b.slots.release("CA0")
    assert await b.slots.has_room()


async def test_a_token_used_anywhere_is_refused_everywhere(
    pair: tuple[Instance, Instance],
) -> None:
    """A nonce claimed on B cannot open a call on A; a CallSid opens one call cluster-wide."""
    a, b = pair
    assert await a.slots.reserve("CA1") is None
    await b.admit("CA1", "n1")
    with pytest.raises(TokenError, match="reused_token"):
        await a.admit("CA1", "n1")
    assert await b.sids.claim("CA1")
    assert not await a.sids.claim("CA1")
    assert await a.sids.had_call("CA1")
    assert not await a.sids.had_call("CA2")


async def test_the_cluster_limit_holds_across_instances(redis: RedisServer) -> None:
    """MAX_CALLS_TOTAL=4 over two instances of 3: the fifth reservation is refused."""
    a = Instance(redis.url, "a", max_total=4)
    b = Instance(redis.url, "b", max_total=4)
    try:
        answers = [await a.slots.reserve(f"A{n}") for n in range(2)]
        answers += [await b.slots.reserve(f"B{n}") for n in range(2)]
        assert answers == [None] * 4
        assert await a.slots.reserve("A9") == "busy_cluster"
        assert await b.slots.reserve("B9") == "busy_cluster"
        await b.admit("A0", "n0")  # a claim moves a slot: the count stays 4
        assert await a.slots.reserve("A9") == "busy_cluster"
        await b.slots.release("A0")
        assert await a.slots.reserve("A9") is None
    finally:
        await a.state.close()
        await b.state.close()


async def test_outcomes_are_taken_once_wherever_asked(pair: tuple[Instance, Instance]) -> None:
    """An outcome put on A is taken on B, once."""
    a, b = pair
    await a.outcomes.put("CA1", Outcome(OutcomeKind.TRANSFER, "transfer", "+15550100"))
    assert await b.outcomes.take("CA1") == Outcome(OutcomeKind.TRANSFER, "transfer", "+15550100")
    assert await a.outcomes.take("CA1") is None


async def test_an_outage_falls_back_to_local_limits_and_recovers(redis: RedisServer) -> None:
    """Redis away: admission on local limits, counted; back: calls re-registered, not degraded."""
    a = Instance(redis.url, "a", max_calls=2)
    try:
        assert await a.slots.reserve("CA1") is None
        await a.admit("CA1", "n1")
        assert await a.sids.claim("CA1")
        redis.stop()
        started = time.monotonic()
        assert await a.slots.reserve("CA2") is None
        assert time.monotonic() - started < 0.5
        assert a.state.degraded and a.state.episodes == 1
        assert await a.slots.reserve("CA3") == "busy"  # CA1 active + CA2 reserved, locally
        await a.admit("CA2", "n2")
        assert await a.sids.claim("CA2")
        assert not await a.sids.claim("CA1")  # remembered here while Redis is away
        assert a.state.fail_open == {"reserve": 2, "claim": 1}
        redis.start()  # empty: its data went with it
        await a.state.renew(renew_only=False)  # what the keeper's probe does
        assert not a.state.degraded
        assert not await a.slots.has_room()  # both calls counted in Redis again
        b = Instance(redis.url, "b", max_calls=2)
        try:
            assert await b.sids.had_call("CA2")  # admitted during the outage, now shared
        finally:
            await b.state.close()
    finally:
        await a.state.close()
