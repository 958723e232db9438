"""Reading a running bridge's Prometheus ``/metrics`` as the scraper would."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.support.servers import Bridge

__all__ = ["scrape"]


def scrape(bridge: Bridge, token: str | None = None) -> dict[str, float]:
    """Every sample, keyed ``name{label=value,...}`` (labels sorted) or ``name``."""
    req = urllib.request.Request(bridge.url + "/metrics")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out
