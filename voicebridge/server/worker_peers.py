"""``/metrics`` across ``serve --workers``: one aggregated view, whichever worker is asked.

A scrape reaches one worker at random (they share the port), so each worker also serves its
own exposition on a Unix socket in a directory the supervisor made, and the one scraped
reads its siblings' and sums them. prometheus-client's multiprocess mode was the other way;
it does not fit here: voicebridge's call counters are read from the live calls at scrape time
(nothing is written per audio frame), which that mode cannot collect, and it drops the
process collectors (CPU, memory, descriptors).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

__all__ = ["MetricsPeers", "Worker", "merge_expositions"]

log = logging.getLogger(__name__)

PEER_TIMEOUT_S = 1.0  # a worker that does not answer within this is left out of the sum

# Samples that are not sums across processes: a start time is the earliest, a limit or an
# "info"/state gauge the largest (1 while any worker is degraded).
_EARLIEST = ("_created", "process_start_time_seconds")
_LARGEST = frozenset(
    {"process_max_fds", "python_info", "voicebridge_build_info", "voicebridge_redis_degraded"}
)


@dataclass(frozen=True)
class Worker:
    """This process's place under ``serve --workers``."""

    index: int
    count: int
    instance_id: str  # the instance's (all its workers') id in Redis
    directory: str  # the supervisor's: each worker's metrics socket

    def socket_path(self, index: int) -> str:
        return str(Path(self.directory) / f"worker-{index}.sock")


class MetricsPeers:
    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    @contextlib.asynccontextmanager
    async def serving(self, registry: CollectorRegistry) -> AsyncIterator[None]:
        """Serve this worker's exposition to its siblings while the app runs."""

        async def answer(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                writer.write(generate_latest(registry))
                await writer.drain()
            finally:
                writer.close()

        path = self.worker.socket_path(self.worker.index)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left by the worker this one replaces
        server = await asyncio.start_unix_server(answer, path)
        try:
            yield
        finally:
            server.close()
            await server.wait_closed()

    async def exposition(self, registry: CollectorRegistry) -> bytes:
        own = generate_latest(registry).decode()
        others = [i for i in range(self.worker.count) if i != self.worker.index]
        texts = await asyncio.gather(*(self._read(i) for i in others))
        found = [own, *(t for t in texts if t is not None)]
        return merge_expositions(found)

    async def _read(self, index: int) -> str | None:
        try:
            async with asyncio.timeout(PEER_TIMEOUT_S):
                reader, writer = await asyncio.open_unix_connection(self.worker.socket_path(index))
                try:
                    return (await reader.read()).decode()
                finally:
                    writer.close()
        except (OSError, TimeoutError) as exc:  # restarting, or stuck: counted out
            log.debug("worker %d's metrics not read: %s", index, exc)
            return None


def merge_expositions(texts: list[str]) -> bytes:
    """Prometheus text expositions of several processes as one: samples with the same name
    and labels summed (earliest of start times, largest of limits and info gauges), and
    ``voicebridge_workers_scraped`` saying how many were read."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            if family.name not in families:
                families[family.name] = Metric(
                    family.name, family.documentation, family.type, family.unit
                )
                values[family.name] = {}
            samples = values[family.name]
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                old = samples.get(key)
                samples[key] = (
                    sample.value if old is None else _combine(sample.name, old, sample.value)
                )
    for name, family in families.items():
        for (sample_name, labels), value in values[name].items():
            family.add_sample(sample_name, dict(labels), value)
    scraped = GaugeMetricFamily(
        "voicebridge_workers_scraped", "worker processes summed in this view", value=len(texts)
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed([*families.values(), scraped]))
    return generate_latest(registry)


def _combine(name: str, old: float, new: float) -> float:
    if name.endswith(_EARLIEST):
        return min(old, new)
    if name in _LARGEST:
        return max(old, new)
    return old + new


class _Fixed(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)
