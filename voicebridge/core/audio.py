"""G.711 μ-law arithmetic and the one place that imports ``audioop``.

``audioop`` is a C module: on Python 3.11-3.12 it ships with the standard library and
warns that it is deprecated (PEP 594); from 3.13 the ``audioop-lts`` package provides it.
Importing it here, with that warning silenced, lets tests run with ``-W error``.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

__all__ = [
    "ULAW_BYTES_PER_MS",
    "ULAW_SILENCE",
    "audioop",
    "b64_decoded_len",
    "rms_ulaw",
    "ulaw_ms_from_b64",
]

ULAW_BYTES_PER_MS = 8  # 8000 one-byte samples per second
ULAW_SILENCE = 0xFF  # μ-law code for zero amplitude


def b64_decoded_len(b64: str) -> int:
    """Length of the bytes a base64 string decodes to, without decoding it."""
    n = len(b64)
    if n == 0:
        return 0
    pad = 2 if b64.endswith("==") else 1 if b64.endswith("=") else 0
    return n * 3 // 4 - pad


def ulaw_ms_from_b64(b64: str) -> float:
    """Duration in ms of base64-encoded μ-law 8 kHz audio."""
    return b64_decoded_len(b64) / ULAW_BYTES_PER_MS


def rms_ulaw(ulaw: bytes) -> int:
    """RMS level (16-bit scale) of μ-law audio."""
    if not ulaw:
        return 0
    return int(audioop.rms(audioop.ulaw2lin(ulaw, 2), 2))
