"""The shutdown budget: when each phase of a drain begins, in seconds from the first signal.

One budget, ``SHUTDOWN_TIMEOUT_S``, bounds everything from SIGTERM to the process's exit,
under the platform's kill timeout (30 s on most)::

    0                 drain_s                     force_at        stop_at   budget_s
    |-- calls go on --|-- closing lines, endings --|-- forced ends --|-- stop --|

* until ``drain_s`` (``DRAIN_TIMEOUT_S``) the calls go on; new webhooks hear ``BUSY_SAY``;
* then each call still open is asked for its closing line, heard within ``closing_s``
  (``CLOSING_TIMEOUT_S``), and ends as any deliberate ending does (Twilio's REST API, its
  ``stop``, the sockets closed: :data:`ENDING_S`);
* at ``force_at`` any call still open is ended at once (``forced``): its sockets close and
  the server stops within :data:`FORCE_S`;
* at ``stop_at`` the server stops whatever is left.

:meth:`ShutdownPlan.fits` is what start-up checks: the drain and the closing line, with the
ending and the forced phase after them, must fit in the budget.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ENDING_S", "FORCE_S", "STOP_S", "ShutdownPlan"]

# After the closing window, a deliberate ending still needs: Twilio's REST answer and the
# `stop` it causes (the closer waits 2 s for it), then both sockets' close (1 s at most each).
ENDING_S = 3.0
# Calls still open this long before the budget ends are ended at once: their cleanup (each
# socket's close is bounded by 1 s) and the server's stop fit in what is left.
FORCE_S = 2.0
# The server stops this long before the budget ends, whatever is still running.
STOP_S = 0.5


@dataclass(frozen=True, slots=True)
class ShutdownPlan:
    """The phases of one shutdown; times in seconds from the first signal."""

    budget_s: float = 25.0  # SHUTDOWN_TIMEOUT_S
    drain_s: float = 10.0  # DRAIN_TIMEOUT_S
    closing_s: float = 10.0  # CLOSING_TIMEOUT_S

    @property
    def closing_lines_at(self) -> float:
        """Calls still open are asked for their closing line."""
        return self.drain_s

    @property
    def force_at(self) -> float:
        """Calls still open are ended at once."""
        return self.budget_s - FORCE_S

    @property
    def stop_at(self) -> float:
        """The server stops, whatever is still running."""
        return self.budget_s - STOP_S

    @property
    def needed_s(self) -> float:
        """The smallest budget this drain and closing window fit in."""
        return self.drain_s + self.closing_s + ENDING_S + FORCE_S

    def fits(self) -> bool:
        return self.needed_s <= self.budget_s

    def server_grace_s(self, elapsed_s: float) -> float:
        """How long the server may wait for its connections once it stops, ``elapsed_s``
        after the signal: what is left before the budget's end, less the stop's own margin."""
        return max(self.budget_s - STOP_S - elapsed_s, 0.0)
