"""Every test of the shell runs on a virtual clock (tests/support/virtual_clock.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from tests.support.virtual_clock import VirtualClockLoop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], VirtualClockLoop]]:
    return {"virtual_clock": VirtualClockLoop}
