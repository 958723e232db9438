"""Binding HOST:PORT before the server starts: a failure names the setting to change."""

from __future__ import annotations

import dataclasses
import socket

import pytest

from voicebridge.config import Settings
from voicebridge.errors import ConfigError
from voicebridge.server.serve import listen

BASE = Settings(host="127.0.0.1", port=0)


def test_listen_binds_host_and_port() -> None:
    with listen(BASE) as sock:
        host, port = sock.getsockname()[:2]
    assert host == "127.0.0.1" and port > 0


def test_a_port_in_use_names_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"^PORT={port}: .*already in use"):
            listen(dataclasses.replace(BASE, port=port))


@pytest.mark.parametrize("host", ["no-such-host.invalid", "192.0.2.1", "::ffff:zz"])
def test_an_address_not_here_names_host(host: str) -> None:
    """An unresolvable name, an address of another machine, a malformed address."""
    with pytest.raises(ConfigError, match=rf"^HOST={host!r}: cannot listen there"):
        listen(dataclasses.replace(BASE, host=host))
