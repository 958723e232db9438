"""How a call ends: the exceptions that end its TaskGroup (or its upstream's), and its result.

The result's :attr:`CallResult.outcome` labels the ending (``failed``, ``deliberate``,
``idle``, ``transfer``, ``caller_hangup``, ``forced``); :meth:`CallResult.after_stream` is
what Twilio's ``<Connect action>`` request is answered with.

Any task ends the call by raising :class:`CallEnded`; the TaskGroup then cancels the rest
(``except*``, the CPython recipe for ending a TaskGroup on 3.11+). The nested upstream group
ends with :class:`UpstreamLost` (replace the connection once) or :class:`Renew` (a fresh
session at the age limit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

from voicebridge.core.outcomes import Outcome, OutcomeKind
from voicebridge.core.stats import CallStats

__all__ = ["CallEnded", "CallResult", "Renew", "UpstreamLost", "first"]


@dataclass(slots=True)
class CallResult:
    """How a call ended, and its counters (the end line, /metrics, the tests)."""

    reason: str
    failed: bool
    call_sid: str = ""
    stream_sid: str = ""
    duration_s: float = 0.0
    stats: CallStats = field(default_factory=CallStats)
    deliberate: bool = False  # ended on purpose after a closing line
    admitted: bool = False  # holds a call slot until released
    refused: str | None = None  # why `start` was refused, if it was
    close_code: int | None = None
    destination: str = ""  # a transfer's target
    # Cut by the shutdown: its budget ran out, or a second signal came (Call.end_by).
    forced: bool = False

    @property
    def outcome(self) -> str:
        """The ending's label, in the end line and on /metrics."""
        if self.forced:
            return "forced"
        if self.failed:
            return "failed"
        if self.deliberate:
            return _DELIBERATE_LABELS.get(self.reason, "deliberate")
        return "caller_hangup"  # the caller hung up, or Twilio's socket went away

    def after_stream(self) -> Outcome | None:
        """What Twilio's ``<Connect action>`` request for this call is answered with.

        None when the caller hung up: Twilio has nobody to run TwiML for. A forced ending
        hangs up after a closing line begun (``deliberate``), else apologises.
        """
        if self.forced:
            kind = OutcomeKind.HANGUP if self.deliberate else OutcomeKind.FAILED
            return Outcome(kind, self.reason)
        if self.failed:
            # The reason's stable head only: the rest may quote a peer's text.
            return Outcome(OutcomeKind.FAILED, self.reason.partition(":")[0][:64])
        if not self.deliberate:
            return None
        if self.destination:
            return Outcome(OutcomeKind.TRANSFER, self.reason, self.destination)
        return Outcome(OutcomeKind.HANGUP, self.reason)


# Deliberate endings with a label of their own (the closer's reasons).
_DELIBERATE_LABELS = {"idle_caller": "idle", "transfer": "transfer"}


class CallEnded(Exception):
    """The call is over: why, whether it failed, and how Twilio's socket is closed."""

    def __init__(
        self, reason: str, failed: bool, close_code: int | None = None, deliberate: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.failed = failed
        self.close_code = close_code
        self.deliberate = deliberate


class UpstreamLost(Exception):
    """The upstream connection ended or stopped responding; it may be replaced once."""


class Renew(Exception):
    """The upstream session reached its age limit: continue in a fresh one."""


E = TypeVar("E", bound=BaseException)


def first(group: BaseException, kind: type[E]) -> E:
    """The first ``kind`` exception in a (nested) exception group."""
    found = _first_or_none(group, kind)
    if found is None:
        raise LookupError(kind.__name__)
    return found


def _first_or_none(exc: BaseException, kind: type[E]) -> E | None:
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _first_or_none(inner, kind)
            if found is not None:
                return found
    return None
