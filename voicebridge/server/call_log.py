"""A call's log lines: one at its start and one at its end, warnings once per call.

Every line of a call goes through its :class:`CallLog`, a ``LoggerAdapter`` carrying the
call's sids, under one logger name (``voicebridge.server.call``) whichever part of the call
writes it, so one filter keeps or drops a call's lines.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from voicebridge.core import twilio as tw
from voicebridge.logs import mask_number
from voicebridge.server.lifetime import CallResult

__all__ = ["CallLog"]

log = logging.getLogger("voicebridge.server.call")


class CallLog(logging.LoggerAdapter[logging.Logger]):
    """The call's logger: its sids on every line once ``start`` has named the call."""

    def __init__(self) -> None:
        super().__init__(log, {})
        self._logged: set[str] = set()

    def once(self, key: str, message: str) -> None:
        """Log a recurring condition once per call; the counters carry the totals.

        Not before ``start`` is admitted: until then the socket is no call, and a refusal
        is logged for it instead (rationed by the guard).
        """
        if self.extra and key not in self._logged:
            self._logged.add(key)
            self.warning("%s", message)

    def started(self, start: tw.Start) -> None:
        self.extra = {"call_sid": start.call_sid, "stream_sid": start.stream_sid}
        params = start.custom_parameters
        fields = {
            "event": "call_started",
            "call_sid": start.call_sid,
            "stream_sid": start.stream_sid,
            "from": mask_number(params.get("From", "")),
            "to": mask_number(params.get("To", "")),
        }
        log.info("call started %s", _kv(fields, skip="event"), extra={"fields": fields})

    def ended(self, r: CallResult) -> None:
        s = r.stats
        fields: dict[str, object] = {
            "event": "call_ended",
            "call_sid": r.call_sid,
            "stream_sid": r.stream_sid,
            "outcome": r.outcome,
            "reason": r.reason,
            "duration_s": round(r.duration_s, 1),
            "frames_in": s.frames_in,
            "chunks_out": s.chunks_out,
            "caller_dropped": s.caller_queue_dropped,
            "caller_paced": s.caller_paced_dropped,
            "playback_dropped": s.playback_queue_dropped,
            "barge_ins": s.barge_ins,
            "truncations": s.truncations,
            "local_pauses": s.local_pauses,  # LOCAL_BARGE_IN
            "false_interruptions": s.false_interruptions,
            "late_deltas": s.late_deltas_dropped,
            "silence_frames": s.silence_frames,
            "idle_reprompts": s.idle_reprompts,
            "failed_responses": s.failed_responses,
            "incomplete_responses": s.incomplete_responses,
            "reconnects": s.reconnects,
            "dtmf": s.dtmf,
            "ignored": dict(s.ignored),
            "unknown_events": dict(s.unknown_events),  # a few names, cut short
            "upstream_ignored": dict(s.upstream_ignored),
            "upstream_errors": dict(s.upstream_errors),
            "tokens": dict(s.tokens),
        }
        level = logging.WARNING if r.failed or r.forced else logging.INFO
        log.log(level, "call ended %s", _kv(fields, skip="event"), extra={"fields": fields})


def _kv(fields: Mapping[str, object], skip: str) -> str:
    return " ".join(f"{k}={v}" for k, v in fields.items() if k != skip)
