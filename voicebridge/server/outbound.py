"""Outbound calls, the serving part: ``POST /calls``, Twilio's Calls create, the pending
call's request until its webhook, call progress and the answering-machine result.

``POST /calls`` (``Authorization: Bearer API_TOKEN``; off while ``API_TOKEN`` is unset) is
validated (:mod:`voicebridge.core.outbound`), paced (``OUTBOUND_CALLS_PER_S``), refused when
this instance has no free call slot (outbound calls count against ``MAX_CALLS``: the webhook
reserves the slot as for any call), then placed through Twilio's REST API. The request is
kept under the CallSid Twilio answers with (this process's memory, or Redis with
``REDIS_URL``, since the webhook may reach another instance) and read back when the call's
webhook comes: its profile and context travel to the stream as ``<Parameter>``s.

The AMD result (``/twilio/amd``) is signalled per CallSid within this instance
(:class:`AmdSignals`) to the live call, whose answers wait for it: a person is answered, a
machine after its beep gets the voicemail message then a deliberate ending, the rest end.
A verdict for a call not running here ends it through the REST API. Status callbacks
(``/twilio/call-status``) are logged, counted and sent as ``call.status`` events when
``CALL_EVENTS_URL`` is set.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection
from urllib.parse import quote, urlencode

from prometheus_client import CollectorRegistry, Counter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from voicebridge.config import Settings
from voicebridge.core.outbound import (
    CALL_STATUSES,
    OutboundRequest,
    Pacer,
    RequestError,
    amd_verdict,
    create_params,
    parse_request,
)
from voicebridge.errors import OutboundError, TwilioRestError
from voicebridge.server.call import Call, CallResult
from voicebridge.server.call_events import CallEvents
from voicebridge.server.connect import Connect
from voicebridge.server.http_client import OutboundHttp
from voicebridge.server.outbound_profile import voicemail_line
from voicebridge.server.outbound_state import PENDING_LIMIT, AmdSignals, PendingCalls
from voicebridge.server.redis_state import RedisState
from voicebridge.server.twilio_rest import rest_auth, update_call

__all__ = ["Outbound"]

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024
MAX_PACING_WAIT_S = 30.0  # a request that would wait longer is told to retry (429)
REST_TIMEOUT_S = 10.0
# Twilio's MachineDetectionTimeout is 30 s by default: past this with no verdict (AMD off on
# the account?) the callee is taken for a person and answered.
AMD_WAIT_S = 35.0
VOICEMAIL_TIMEOUT_S = 60.0  # a voicemail message is heard whole (CLOSING_TIMEOUT_S is for a line)
_AMD_LABELS = frozenset(
    {"human", "machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other"}
    | {"fax", "unknown"}
)


class Outbound:
    """``POST /calls`` and the callbacks of the calls it placed."""

    def __init__(
        self,
        settings: Settings,
        http: OutboundHttp,
        registry: CollectorRegistry,
        *,
        profiles: Collection[str],
        has_room: Callable[[], Awaitable[bool]],
        redis: RedisState | None = None,
        events: CallEvents | None = None,
    ) -> None:
        self.settings = settings
        self.http = http
        self.profiles = profiles
        self.has_room = has_room  # async: a free call slot on this instance
        self.events = events
        self.pending = PendingCalls(redis)
        self.here: OrderedDict[str, OutboundRequest] = OrderedDict()  # webhooks answered here
        self.live: set[str] = set()  # outbound calls running here, waiting for their verdict
        self._running: dict[int, tuple[Call, asyncio.TaskGroup]] = {}  # by id(call)
        self._watchers: dict[int, asyncio.Task[None]] = {}
        self.amd = AmdSignals()
        self.pacer = Pacer(settings.outbound_calls_per_s)
        self.allow = tuple(p.strip() for p in settings.outbound_allow.split(",") if p.strip())
        self.requests = Counter(
            "voicebridge_outbound_requests",
            "POST /calls requests, by result",
            ["result"],
            registry=registry,
        )
        self.statuses = Counter(
            "voicebridge_outbound_call_status",
            "Twilio status callbacks of outbound calls, by CallStatus",
            ["status"],
            registry=registry,
        )
        self.amd_results = Counter(
            "voicebridge_outbound_amd",
            "answering-machine results, by AnsweredBy",
            ["answered_by"],
            registry=registry,
        )

    @classmethod
    def for_app(
        cls,
        settings: Settings,
        connect: Connect,
        registry: CollectorRegistry,
        has_room: Callable[[], Awaitable[bool]],
        redis: RedisState | None,
    ) -> Outbound:
        names = [p.name for p in connect.profiles.all()]
        outbound = cls(
            settings,
            connect.http,
            registry,
            profiles=names,
            has_room=has_room,
            redis=redis,
            events=connect.events,
        )
        connect.outbound_request = outbound.started
        return outbound

    async def callback(self, path: str, params: dict[str, str]) -> None:
        """A verified Twilio callback: ``/twilio/amd`` or ``/twilio/call-status``."""
        if path.endswith("/amd"):
            await self.amd_result(params)
        else:
            self.call_status(params)

    # -- POST /calls -----------------------------------------------------------------

    def _refused(self, result: str, status: int, message: str) -> Response:
        self.requests.labels(result).inc()
        return JSONResponse({"error": message}, status_code=status)

    async def place(self, request: Request) -> Response:
        token = self.settings.api_token.reveal()
        if not token:
            return self._refused("off", 403, "outbound calls are off: API_TOKEN is not set")
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return self._refused("unauthorized", 401, "a valid Bearer API_TOKEN is required")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return self._refused("invalid", 413, f"the body is over {MAX_BODY} bytes")
        try:
            call = parse_request(body, allow=self.allow, profiles=self.profiles)
        except RequestError as exc:
            return self._refused("invalid", exc.status, str(exc))
        if not await self.has_room():
            return self._refused("busy", 503, "all call slots (MAX_CALLS) are taken")
        now = asyncio.get_running_loop().time()  # the clock the pacing sleeps on
        if self.pacer.backlog(now) > MAX_PACING_WAIT_S:
            refusal = self._refused("paced", 429, "too many calls queued: retry later")
            refusal.headers["Retry-After"] = str(int(MAX_PACING_WAIT_S))
            return refusal
        delay = self.pacer.reserve(now)
        if delay > 0:
            await asyncio.sleep(delay)  # OUTBOUND_CALLS_PER_S: Twilio queues calls beyond it
        try:
            call_sid = await self._create(call)
        except TwilioRestError as exc:
            log.warning("outbound call to %s not placed: %s", _masked(call.to), exc)
            return self._refused("rest_failed", 502, str(exc))
        await self.pending.put(call_sid, call)
        self.requests.labels("placed").inc()
        log.info(
            "outbound call placed call_sid=%s to=%s profile=%s",
            call_sid,
            _masked(call.to),
            call.profile,
            extra={"fields": {"call_sid": call_sid, "profile": call.profile}},
        )
        return JSONResponse({"call_sid": call_sid, "status": "queued"}, status_code=202)

    async def _create(self, call: OutboundRequest) -> str:
        """Twilio's Calls create; the new call's SID.

        Raises:
            TwilioRestError: not configured, refused, unreachable, or no SID in the answer.
        """
        auth = rest_auth(self.settings)
        base = self.settings.public_url
        if auth is None or not base:
            raise TwilioRestError("TWILIO_ACCOUNT_SID with a token or API key, and PUBLIC_URL")
        url = (
            f"{self.settings.twilio_api_base}/2010-04-01/Accounts/"
            f"{quote(self.settings.twilio_account_sid)}/Calls.json"
        )
        form = create_params(call, self.settings.outbound_caller_id, base)
        try:
            answer = await self.http.post(
                url,
                content=urlencode(form).encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout_s=REST_TIMEOUT_S,
                auth=auth,
            )
        except OutboundError as exc:
            raise TwilioRestError(f"Twilio REST API unreachable: {exc}") from None
        if not answer.ok:
            raise TwilioRestError(f"Twilio REST API answered HTTP {answer.status} to Calls create")
        try:
            sid = json.loads(answer.body)["sid"]
        except (ValueError, KeyError, TypeError):
            sid = None
        if not isinstance(sid, str) or not sid.startswith("CA"):
            raise TwilioRestError("Twilio REST API's answer to Calls create has no call SID")
        return sid[:64]

    # -- the call's webhook ----------------------------------------------------------

    async def stream_parameters(self, call_sid: str) -> dict[str, str]:
        """The ``<Parameter>``s of a placed call's stream (none for any other call)."""
        call = await self.pending.get(call_sid) if call_sid else None
        if call is None:
            return {}
        self.here[call_sid] = call  # its instructions and voicemail message, for the stream
        while len(self.here) > PENDING_LIMIT:
            self.here.popitem(last=False)
        return call.parameters()

    # -- the live call ---------------------------------------------------------------

    async def run(self, call: Call) -> CallResult:
        """``call.run()``; an outbound call's AMD verdict is applied to it as it comes (by a
        task :meth:`started` adds to this call's group: an inbound call has none)."""
        async with asyncio.TaskGroup() as tg:
            self._running[id(call)] = (call, tg)
            try:
                return await call.run()
            finally:
                del self._running[id(call)]
                watcher = self._watchers.pop(id(call), None)
                if watcher is not None:
                    watcher.cancel()

    def started(self, call_sid: str) -> OutboundRequest | None:
        """An outbound call's ``start`` was admitted here (``Connect.setup``, before its
        upstream opens): hold its answers, watch for its verdict; its request, if known."""
        for key, (call, tg) in self._running.items():
            start = call.core.start
            if start is not None and start.call_sid == call_sid and key not in self._watchers:
                call.core.hold_answers = True  # the callee speaks first; nobody is answered yet
                self.live.add(call_sid)
                self._watchers[key] = tg.create_task(self._watch(call, call_sid), name="amd")
        return self.here.get(call_sid)

    async def _watch(self, call: Call, call_sid: str) -> None:
        try:
            async with asyncio.timeout(AMD_WAIT_S):
                answered_by = await self.amd.wait(call_sid)
        except TimeoutError:
            call.log.warning("no answering-machine verdict in %g s: answering", AMD_WAIT_S)
            answered_by = "human"
        finally:
            self.live.discard(call_sid)
        verdict = amd_verdict(answered_by)
        if verdict == "human":
            call.apply(call.core.release_answers())
        elif verdict == "machine":
            request = self.here.get(call_sid)
            setup = call.setup  # set by now: this task was started within Connect.setup
            message = (request.voicemail if request else "") or (
                setup.profile.settings.voicemail_message if setup else ""
            )
            if not message:
                call.request_close("voicemail", None)  # nothing to leave: hang up
                return
            call.closer.settings = dataclasses.replace(
                call.closer.settings, closing_timeout_s=VOICEMAIL_TIMEOUT_S
            )
            call.request_close("voicemail", voicemail_line(message))
        else:
            call.request_close(
                f"amd_{answered_by if answered_by in _AMD_LABELS else 'other'}", None
            )

    # -- Twilio's callbacks (already verified by the guard) --------------------------

    async def amd_result(self, params: dict[str, str]) -> None:
        """``AsyncAmdStatusCallback``: signal the live call; end it unless a person answered."""
        call_sid = params.get("CallSid", "")[:64]
        answered_by = params.get("AnsweredBy", "unknown")[:32]
        self.amd_results.labels(answered_by if answered_by in _AMD_LABELS else "other").inc()
        verdict = amd_verdict(answered_by)
        log.info(
            "outbound call_sid=%s answered_by=%s: %s",
            call_sid,
            answered_by,
            {"human": "conversing", "machine": "voicemail", "end": "ending"}[verdict],
            extra={"fields": {"call_sid": call_sid, "answered_by": answered_by}},
        )
        self.amd.set(call_sid, answered_by)
        if verdict != "human" and call_sid and call_sid not in self.live:
            # Not running here: ended by REST (a voicemail message needs the live call).
            try:
                await update_call(self.http, self.settings, call_sid, {"Status": "completed"})
            except TwilioRestError as exc:
                log.warning("call_sid=%s not ended after AMD: %s", call_sid, exc)
        if self.events is not None:
            self.events.emit("call.amd", {"call_sid": call_sid, "answered_by": answered_by})

    def call_status(self, params: dict[str, str]) -> None:
        call_sid = params.get("CallSid", "")[:64]
        status = params.get("CallStatus", "")[:32]
        label = status if status in CALL_STATUSES else "other"
        self.statuses.labels(label).inc()
        fields = {"call_sid": call_sid, "call_status": label}
        if label in ("busy", "no-answer", "failed", "canceled"):
            log.warning("outbound call_sid=%s %s", call_sid, label, extra={"fields": fields})
        else:
            log.info("outbound call_sid=%s %s", call_sid, label, extra={"fields": fields})
        if self.events is not None:
            duration = params.get("CallDuration", "")
            data: dict[str, object] = {"call_sid": call_sid, "status": label}
            if duration.isdigit():
                data["duration_s"] = int(duration)
            self.events.emit("call.status", data)


def _masked(number: str) -> str:
    """A destination in a log line: enough to recognise, not the whole number."""
    return number[:-4] + "****" if len(number) > 6 else "****"
