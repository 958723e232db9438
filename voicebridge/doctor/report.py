"""The doctor's report: one printed line per check, and the count of failures."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TextIO

__all__ = ["Report"]


@dataclass
class Report:
    """The check lines as they are printed, and whether any failed."""

    out: TextIO
    checks: int = 0
    failed: int = 0

    def _line(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def ok(self, text: str) -> None:
        self.checks += 1
        self._line(f"[ ok ] {text}")

    def fail(self, text: str, fix: str) -> None:
        self.checks += 1
        self.failed += 1
        self._line(f"[FAIL] {text} — fix: {fix}")

    def warn(self, text: str) -> None:
        self._line(f"[warn] {text}")

    def note(self, text: str) -> None:
        self._line(f"       {text}")
