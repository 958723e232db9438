"""The ASGI application: the TwiML webhook, the Media Streams WebSocket, health checks."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from voicebridge import __version__
from voicebridge.config import Settings
from voicebridge.core.admission import TOKEN_PARAMETER
from voicebridge.core.context import custom_parameters
from voicebridge.core.outcomes import MemoryOutcomes, OutcomeStore
from voicebridge.core.shutdown import ShutdownPlan
from voicebridge.core.slots import CLUSTER_BUSY
from voicebridge.core.twiml import (
    after_stream_twiml,
    hangup_twiml,
    say_twiml,
    stream_twiml,
    stream_url,
)
from voicebridge.server.call import Call, CallResult
from voicebridge.server.connect import Connect
from voicebridge.server.guard import Guard
from voicebridge.server.http_edge import EXCEPTION_HANDLERS
from voicebridge.server.metrics import Metrics
from voicebridge.server.outbound import Outbound
from voicebridge.server.recorder import RecordingHealth
from voicebridge.server.shared_state import SharedState
from voicebridge.server.shutdown import DRAINING, Shutdown
from voicebridge.server.stream_url import InsecureStreamUrls, usable_stream_url
from voicebridge.server.twilio_socket import StarletteTwilioSocket
from voicebridge.server.worker_peers import Worker

__all__ = ["AppState", "create_app"]

log = logging.getLogger(__name__)

MAX_WEBHOOK_BODY = 64 * 1024  # Twilio's voice webhook bodies are a few hundred bytes
# Twilio requests <Connect action> within a second of the stream's end; an outcome older than
# this is of a call whose action never came. The bound holds far more than that many calls.
OUTCOME_TTL_S = 600.0
OUTCOME_LIMIT = 100_000
# <Stream statusCallback>'s StreamEvent values; anything else is counted as "other".
STREAM_EVENTS = frozenset({"stream-started", "stream-stopped", "stream-error"})


@dataclass(slots=True)
class AppState:
    """Process-wide state and counters (read by /readyz and the tests)."""

    guard: Guard
    metrics: Metrics
    outcome_store: OutcomeStore  # each call's ending, for its after-stream answer
    accepting: bool = True
    calls: set[Call] = field(default_factory=set)  # running, for drain
    no_calls: asyncio.Event = field(default_factory=asyncio.Event)
    active_calls: int = 0
    calls_total: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    last_results: list[CallResult] = field(default_factory=list)
    shutdown: Shutdown = field(default_factory=lambda: Shutdown(ShutdownPlan()))

    def begin_drain(self, now: float) -> None:
        """The first signal, at loop time ``now``: no new calls (streams whose webhook came
        before are still admitted: the guard), and every call gets the shutdown's orders."""
        self.accepting = False
        self.guard.begin_drain()
        self.shutdown.begin(now, self.calls)

    async def wait_no_calls(self, timeout: float) -> bool:  # noqa: ASYNC109 (a deadline in a loop)
        """Wait until no call is running; False when ``timeout`` seconds pass first."""
        if not self.calls:
            return True
        try:
            async with asyncio.timeout(timeout):
                await self.no_calls.wait()
        except TimeoutError:
            return False
        return True

    async def is_ready(self) -> bool:
        return self.accepting and await self.guard.has_room()


def public_base(request: Request, settings: Settings) -> str:
    """The https base Twilio reached us at.

    PUBLIC_URL when set; otherwise the scheme uvicorn took from a trusted
    ``X-Forwarded-Proto`` (FORWARDED_ALLOW_IPS) and the ``Host`` header.
    """
    if settings.public_url:
        return settings.public_url
    host = request.headers.get("host") or f"{settings.host}:{settings.port}"
    return f"{request.url.scheme}://{host}"


def _peer(request: Request | WebSocket) -> str:
    return request.client.host if request.client else "?"


async def _read_body(request: Request) -> bytes | None:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_WEBHOOK_BODY:
            return None
    return body


def create_app(
    settings: Settings, outcomes: OutcomeStore | None = None, worker: Worker | None = None
) -> Starlette:
    """The app; ``outcomes`` is shared between instances when given (else one per app, or
    Redis's with REDIS_URL); ``worker`` is its place under ``serve --workers``."""
    shared = SharedState.build(
        settings, worker, MemoryOutcomes(OUTCOME_TTL_S, OUTCOME_LIMIT, time.monotonic)
    )
    guard = Guard(settings, shared.call_sids, shared.slots, shared.admission)
    calls: set[Call] = set()
    recording = RecordingHealth()
    metrics = Metrics(
        # Admitted calls only: a socket before admission is no call, and never counted as one.
        live=lambda: [c.core.stats for c in calls if c.admitted],
        rejected=lambda: guard.rejected,
        recording_failures=lambda: recording.failures,
    )
    shared.register(metrics.registry)
    # Profiles per number, tools, call events (a wrong file or template stops the start-up).
    connect = Connect(settings, metrics.registry)
    if outcomes is None:
        outcomes = shared.outcomes
    state = AppState(
        guard, metrics, outcomes, calls=calls, shutdown=Shutdown(settings.shutdown_plan())
    )
    insecure_urls = InsecureStreamUrls()
    # POST /calls; off while API_TOKEN is unset.
    outbound = Outbound.for_app(settings, connect, metrics.registry, state.is_ready, shared.redis)

    async def twilio_request(request: Request) -> tuple[Response | None, dict[str, str]]:
        """Read and authenticate a Twilio request: (refusal, parameters)."""
        body = await _read_body(request)
        if body is None:
            guard.reject("body_too_large", request.url.path, _peer(request))
            return PlainTextResponse("request body too large", status_code=413), {}
        reason = guard.check_request(request, body)
        if reason:
            guard.reject(reason, request.url.path, _peer(request))
            return PlainTextResponse("forbidden", status_code=403), {}
        params = dict(request.query_params)
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        return None, params

    def say(params: dict[str, str], line: str) -> Response:
        """``FAILURE_SAY`` or ``BUSY_SAY`` of the number called, in its language."""
        profile = connect.for_number(params.get("To", "")).settings
        text = profile.busy_say if line == "busy" else profile.failure_say
        return Response(say_twiml(text, profile.say_language), media_type="text/xml")

    async def twilio_stream(request: Request) -> Response:
        refusal, params = await twilio_request(request)
        if refusal:
            return refusal
        call_sid = params.get("CallSid", "")
        if not call_sid:
            guard.reject("no_call_sid", request.url.path, _peer(request))
            return PlainTextResponse("CallSid is required", status_code=400)
        if await guard.had_call(call_sid):
            # A replayed webhook (Twilio places a CallSid's stream once): no token, no stream.
            guard.reject("call_sid_reused", request.url.path, _peer(request))
            return Response(hangup_twiml(), media_type="text/xml")
        base = public_base(request, settings)
        url = stream_url(base)
        if not usable_stream_url(url):  # before a slot is reserved for a call that cannot stream
            metrics.webhook_errors["insecure_stream_url"] += 1
            insecure_urls.refused(url, _peer(request), request.headers.get("x-forwarded-proto"))
            return say(params, "failure")
        insecure_urls.served()
        if not state.accepting:  # a drain: its own reason and rationed line, never "busy"
            guard.reject(DRAINING, request.url.path, _peer(request))
            return say(params, "busy")
        token, busy = await guard.reserve(call_sid)
        if token is None:
            guard.rejected[busy or "busy"] += 1
            if busy == CLUSTER_BUSY:
                log.warning(
                    "the cluster's %d call slots (MAX_CALLS_TOTAL) are taken: answering busy",
                    settings.max_calls_total,
                )
            else:
                log.warning("all %d call slots taken: answering busy", guard.admission.max_calls)
            return say(params, "busy")
        # `start` carries no caller or callee number: pass what the bridge needs later.
        parameters = {k: params[k] for k in ("From", "To") if params.get(k)}
        parameters.update(custom_parameters(request.query_params.multi_items()))
        # A call POST /calls placed: its profile and context (a lookup miss for any other).
        parameters.update(await outbound.stream_parameters(call_sid))
        parameters[TOKEN_PARAMETER] = token
        profile = connect.for_number(params.get("To", "")).settings
        twiml = stream_twiml(
            url,
            parameters,
            welcome_say=profile.welcome_say,
            failure_say=profile.failure_say,
            language=profile.say_language,
            status_callback=base + "/twilio/stream-status",
            action=base + "/twilio/after-stream",  # absolute: Twilio refuses a relative one
        )
        return Response(twiml, media_type="text/xml")

    async def twilio_fallback(request: Request) -> Response:
        # "Primary handler fails": Twilio could not fetch or run our TwiML. Apologise.
        refusal, params = await twilio_request(request)
        return refusal or say(params, "failure")

    async def after_stream(request: Request) -> Response:
        # <Connect action>: the stream is over and Twilio asks what to run next. A call is
        # answered by its recorded outcome; an unknown one (its instance is gone, the record
        # expired) gets the apology rather than silence.
        refusal, params = await twilio_request(request)
        if refusal:
            return refusal
        call_sid = params.get("CallSid", "")[:64]
        outcome = None
        try:
            outcome = await state.outcome_store.take(call_sid) if call_sid else None
        except Exception as exc:  # a shared store's outage: the caller still gets an answer
            log.warning("outcome store failed for call_sid=%s: %r", call_sid, exc)
        answer = outcome.kind.value if outcome else "unknown"
        metrics.after_stream[answer] += 1
        fields = {
            "call_sid": call_sid,
            "answer": answer,
            "reason": outcome.reason if outcome else "",
        }
        if outcome is None:
            log.warning(
                "after-stream call_sid=%s: no outcome recorded here, answering the apology "
                "(did another instance run the call?)",
                call_sid,
                extra={"fields": fields},
            )
        else:
            log.info(
                "after-stream call_sid=%s answer=%s", call_sid, answer, extra={"fields": fields}
            )
        said = connect.for_number(params.get("To", "")).settings
        twiml = after_stream_twiml(outcome, said.failure_say, said.say_language)
        return Response(twiml, media_type="text/xml")

    async def stream_status(request: Request) -> Response:
        # Twilio's <Stream statusCallback>: without it a proxy or TLS mistake shows up only
        # as "every caller hears the apology".
        refusal, params = await twilio_request(request)
        if refusal:
            return refusal
        event = params.get("StreamEvent", "unknown")[:32]
        # A label per documented event only: with TWILIO_AUTH_TOKEN unset anyone may post here.
        metrics.stream_events[event if event in STREAM_EVENTS else "other"] += 1
        # JSON log keys are snake_case on every line (call_sid, as on the call's own lines).
        fields = {
            "call_sid": params.get("CallSid", ""),
            "stream_sid": params.get("StreamSid", ""),
            "stream_event": event,
        }
        if event == "stream-error":
            fields["stream_error"] = params.get("StreamError", "")
            log.warning(
                "Twilio stream error call_sid=%s stream_sid=%s: %s",
                fields["call_sid"],
                fields["stream_sid"],
                fields["stream_error"],
                extra={"fields": fields},
            )
        else:
            log.info(
                "Twilio %s call_sid=%s stream_sid=%s",
                event,
                fields["call_sid"],
                fields["stream_sid"],
                extra={"fields": fields},
            )
        return Response(status_code=204)

    async def outbound_callback(request: Request) -> Response:
        # Call progress and AMD results of the calls POST /calls placed.
        refusal, params = await twilio_request(request)
        if refusal:
            return refusal
        await outbound.callback(request.url.path, params)
        return Response(status_code=204)

    async def metrics_endpoint(request: Request) -> Response:
        token = settings.metrics_token.reveal()
        if token:
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                guard.reject("metrics_unauthorized", "/metrics", _peer(request))
                return PlainTextResponse("unauthorized", status_code=401)
        return Response(await shared.exposition(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def realtime(websocket: WebSocket) -> None:
        reason = guard.check_handshake(websocket)
        if reason:
            guard.reject(reason, "/realtime handshake", _peer(websocket))
            await websocket.close(code=1008)  # before accept: an HTTP 403
            return
        # Accepted while draining too: a stream whose webhook was answered before the drain
        # began is admitted (guard.admit decides at `start`, from its token).
        await websocket.accept()
        call = Call(
            StarletteTwilioSocket(websocket),
            settings,
            guard.admit,
            observe=metrics.observe,
            connect=connect,
            recording=recording,
            outcomes=state.outcome_store,
        )
        state.calls.add(call)
        state.shutdown.adopt(call)  # during a drain: its cutoff, and its closing line
        state.no_calls.clear()
        state.active_calls += 1
        state.calls_total += 1
        result: CallResult | None = None
        try:
            result = await outbound.run(call)  # with an outbound call's AMD verdict
        finally:
            state.active_calls -= 1
            state.calls.discard(call)
            if not state.calls:
                state.no_calls.set()
            if result is None and call.admitted and call.core.start is not None:
                await guard.release(call.core.start.call_sid)  # run() failed: free the slot
        if result.admitted:
            await guard.release(result.call_sid)
        if result.refused:  # a socket that ended before admission: a refusal, never a call
            guard.reject(result.refused, "/realtime start", _peer(websocket))
        else:
            metrics.call_ended(result.stats, result.outcome)
            state.outcomes[result.outcome] += 1
        state.last_results.append(result)
        del state.last_results[:-50]

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__})

    async def readyz(request: Request) -> Response:
        body = {
            "active_calls": state.active_calls,
            "accepting": state.accepting,
            # Tasks in the server's loop: back to the idle count once calls end (no leak).
            "tasks": len(asyncio.all_tasks()),
            **shared.status(),  # Redis unreachable: still ready, on local limits
        }
        if await state.is_ready():
            return JSONResponse({"status": "ready", **body})
        return JSONResponse({"status": "not ready", **body}, status_code=503)

    app = Starlette(
        routes=[
            Route("/twilio/stream", twilio_stream, methods=["GET", "POST"]),
            Route("/twilio/fallback", twilio_fallback, methods=["GET", "POST"]),
            Route("/twilio/stream-status", stream_status, methods=["POST"]),
            Route("/twilio/after-stream", after_stream, methods=["POST"]),
            Route("/twilio/amd", outbound_callback, methods=["POST"]),
            Route("/twilio/call-status", outbound_callback, methods=["POST"]),
            Route("/calls", outbound.place, methods=["POST"]),
            Route("/metrics", metrics_endpoint),
            WebSocketRoute("/realtime", realtime),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=connect.lifespan(shared.lifespan),
    )
    app.state.voicebridge = state
    app.state.shared = shared
    app.state.settings = settings
    app.state.connect = connect
    app.state.outbound = outbound
    return app
