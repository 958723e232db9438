"""The ASGI application: the TwiML webhook, the Media Streams WebSocket, health checks."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from voicebridge.config import Settings
from voicebridge.core.twiml import stream_twiml, stream_url, twiml_escape
from voicebridge.server.call import CallResult, run_call

__all__ = ["AppState", "create_app"]

log = logging.getLogger(__name__)

MAX_WEBHOOK_BODY = 64 * 1024  # Twilio's voice webhook bodies are a few hundred bytes


@dataclass(slots=True)
class AppState:
    """Process-wide call counters (read by /readyz and the tests)."""

    accepting: bool = True
    active_calls: int = 0
    calls_total: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    last_results: list[CallResult] = field(default_factory=list)


def public_base(request: Request, settings: Settings) -> str:
    """The https base Twilio reached us at.

    PUBLIC_URL when set; otherwise the scheme uvicorn took from a trusted
    ``X-Forwarded-Proto`` (FORWARDED_ALLOW_IPS) and the ``Host`` header.
    """
    if settings.public_url:
        return settings.public_url
    host = request.headers.get("host") or f"{settings.host}:{settings.port}"
    return f"{request.url.scheme}://{host}"


def create_app(settings: Settings) -> Starlette:
    state = AppState()

    async def twilio_stream(request: Request) -> Response:
        if request.method == "POST":
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_WEBHOOK_BODY:
                    return PlainTextResponse("request body too large", status_code=413)
            params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        else:
            params = dict(request.query_params)
        # `start` carries no caller or callee number: pass what the bridge needs later.
        parameters = {k: params[k] for k in ("From", "To") if params.get(k)}
        twiml = stream_twiml(
            stream_url(public_base(request, settings)),
            parameters,
            welcome_say=settings.welcome_say,
            failure_say=settings.failure_say,
        )
        return Response(twiml, media_type="text/xml")

    async def twilio_fallback(request: Request) -> Response:
        # "Primary handler fails": Twilio could not fetch or run our TwiML. Apologise.
        twiml = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Response>\n'
            f"  <Say>{twiml_escape(settings.failure_say)}</Say>\n  <Hangup />\n</Response>\n"
        )
        return Response(twiml, media_type="text/xml")

    async def realtime(websocket: WebSocket) -> None:
        await websocket.accept()
        state.active_calls += 1
        state.calls_total += 1
        try:
            result = await run_call(websocket, settings)
        finally:
            state.active_calls -= 1
        state.outcomes["failed" if result.failed else "ok"] += 1
        state.last_results.append(result)
        del state.last_results[:-50]

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if state.accepting:
            return JSONResponse({"status": "ready", "active_calls": state.active_calls})
        return JSONResponse({"status": "draining"}, status_code=503)

    app = Starlette(
        routes=[
            Route("/twilio/stream", twilio_stream, methods=["GET", "POST"]),
            Route("/twilio/fallback", twilio_fallback, methods=["GET", "POST"]),
            WebSocketRoute("/realtime", realtime),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
        ]
    )
    app.state.voicebridge = state
    app.state.settings = settings
    return app
