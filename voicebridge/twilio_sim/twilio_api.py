"""A local stand-in for Twilio's REST Calls API that places the calls it is asked for.

``POST /2010-04-01/Accounts/{AccountSid}/Calls.json`` (Calls create) is answered with a new
CallSid, then the call is carried out as Twilio would, against the bridge that asked: the
status callbacks it subscribed to (``initiated``, ``ringing``, ``answered``, ``completed``
with the final ``CallStatus``), the voice webhook (``Direction=outbound-api``), the Media
Streams connection played by the :class:`~voicebridge.twilio_sim.callee.Callee` the number
maps to, and the asynchronous AMD result at the callee's verdict time; every request signed
with the Auth Token. ``POST …/Calls/{CallSid}.json`` with ``Status=completed`` hangs the
call up (the stream gets its ``stop``). Used by the tests and ``voicebridge demo --outbound``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from voicebridge.twilio_sim.call_report import CallReport
from voicebridge.twilio_sim.callee import Callee
from voicebridge.twilio_sim.stream import EmulatedCall
from voicebridge.twilio_sim.webhook_client import LocalProxy, call_params, new_sid, post_webhook

__all__ = ["ApiRequest", "FakeTwilioApi", "PlacedCall"]

_CREATE = re.compile(r"/2010-04-01/Accounts/(AC\w+)/Calls\.json")
_UPDATE = re.compile(r"/2010-04-01/Accounts/(AC\w+)/Calls/(CA\w+)\.json")
RING_S = 0.2  # initiated -> ringing -> answered, each this long
MAX_BODY = 64 * 1024


@dataclass
class ApiRequest:
    at: float  # time.monotonic()
    path: str
    auth: str  # "user:password"
    form: list[tuple[str, str]]

    def get(self, name: str) -> str:
        return next((v for k, v in self.form if k == name), "")

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.form if k == name]


@dataclass
class PlacedCall:
    call_sid: str
    callee: Callee
    create: ApiRequest
    callbacks: list[tuple[str, dict[str, str], int]] = field(
        default_factory=list
    )  # url, form, status
    report: CallReport | None = None
    hung_up_by_rest: bool = False
    after_stream: tuple[tuple[str, str], ...] = ()  # the <Connect action>'s TwiML verbs
    done: asyncio.Event = field(default_factory=asyncio.Event)
    _stream: EmulatedCall | None = None

    def statuses(self) -> list[str]:
        """The CallStatus of each status callback, in order."""
        return [f["CallStatus"] for url, f, _ in self.callbacks if url.endswith("/call-status")]

    def summary(self) -> list[str]:
        """What Twilio saw of the call, for ``voicebridge demo --outbound``."""
        refused = sum(status == 403 for _, _, status in self.callbacks)
        lines = [
            f"{self.callee.name}: call {self.call_sid}, status callbacks "
            f"{' -> '.join(self.statuses())} ({refused} refused as unsigned)"
        ]
        report = self.report
        if report is None:
            return lines
        amd = self.callee.amd_at_ms
        chunks = report.player.chunks
        spoke = f"{min(c.start for c in chunks) / 1000:.1f} s" if chunks else "never"
        whole = all(c.played >= c.duration - 1 for c in chunks)
        lines.append(
            f"  callee spoke until {self.callee.speech_ends_ms / 1000:.1f} s, AMD said "
            f"{self.callee.answered_by!r} at {amd / 1000:.1f} s, the assistant spoke at {spoke}"
            f" ({sum(c.duration for c in chunks) / 1000:.1f} s of audio, "
            f"{'heard whole' if whole else 'cut short'})"
        )
        if self.hung_up_by_rest:
            ended = "the bridge hung up through the REST API"
        elif report.closed_by == "server":
            ended = "the bridge closed the stream; Twilio then ran " + (
                ", ".join(f"<{v}>" for v, _ in self.after_stream) or "nothing"
            )
        else:
            ended = "the callee hung up"
        lines.append(f"  {ended}; {len(report.violations)} protocol violations")
        return lines


class FakeTwilioApi:
    """Calls create and update, each placed call driven against the bridge's callbacks."""

    def __init__(
        self,
        callees: Callable[[str], Callee],
        *,
        auth_token: str,
        credentials: set[str] | None = None,
        proxy: LocalProxy | None = None,
        timeout: float = 120.0,
    ) -> None:
        """``callees`` maps a dialled number to who answers; ``credentials`` are the
        "user:password" pairs accepted (None: any); ``proxy`` reaches the public URLs."""
        self.callees = callees
        self.auth_token = auth_token
        self.credentials = credentials
        self.proxy = proxy
        self.timeout = timeout
        self.requests: list[ApiRequest] = []
        self.calls: dict[str, PlacedCall] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # the calls being placed (owned by _tg)
        self._hangup: EmulatedCall | None = None  # hung up once the update is answered

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        """Serve on a free loopback port; yields its base URL (``TWILIO_API_BASE``)."""
        async with asyncio.TaskGroup() as tg:
            self._tg = tg
            server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            try:
                yield f"http://127.0.0.1:{port}"
            finally:
                server.close()
                for call in self.calls.values():
                    if call._stream is not None:
                        call._stream.request_hangup()
                for task in self._tasks:
                    task.cancel()

    async def wait_done(self, call_sid: str) -> PlacedCall:
        call = self.calls[call_sid]
        await call.done.wait()
        return call

    # -- HTTP ----------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                words = (await reader.readline()).decode("latin-1").split()
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = min(int(headers.get("content-length", "0")), MAX_BODY)
                body = await reader.readexactly(length)
            self._hangup = None
            status, answer = self._answer(words[1] if len(words) > 1 else "/", headers, body)
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(answer)}\r\nConnection: close\r\n\r\n".encode()
                + answer
            )
            await writer.drain()
            if self._hangup is not None:  # as Twilio: the update is answered, then done
                self._hangup.request_hangup()
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def _answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        auth = headers.get("authorization", "").removeprefix("Basic ")
        request = ApiRequest(
            time.monotonic(),
            path,
            base64.b64decode(auth).decode() if auth else "",
            parse_qsl(body.decode(), keep_blank_values=True),
        )
        self.requests.append(request)
        if self.credentials is not None and request.auth not in self.credentials:
            return 401, b'{"code": 20003, "message": "Authenticate"}'
        if _CREATE.fullmatch(path):
            return self._create(request)
        update = _UPDATE.fullmatch(path)
        if update:
            call = self.calls.get(update.group(2))
            if call is None:
                return 404, b'{"code": 20404, "message": "not found"}'
            if request.get("Status") == "completed" and call._stream is not None:
                call.hung_up_by_rest = True
                self._hangup = call._stream
            return 200, json.dumps({"sid": call.call_sid, "status": "completed"}).encode()
        return 404, b'{"code": 20404, "message": "not found"}'

    def _create(self, request: ApiRequest) -> tuple[int, bytes]:
        missing = [k for k in ("To", "From", "Url") if not request.get(k)]
        if missing:
            return 400, json.dumps({"code": 21201, "message": f"{missing[0]} missing"}).encode()
        call = PlacedCall(new_sid("CA"), self.callees(request.get("To")), request)
        self.calls[call.call_sid] = call
        assert self._tg is not None
        task = self._tg.create_task(self._drive(call), name=f"place-{call.call_sid}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return 201, json.dumps({"sid": call.call_sid, "status": "queued"}).encode()

    # -- the call, as Twilio places it --------------------------------------------

    async def _post(self, call: PlacedCall, url: str, params: dict[str, str]) -> int:
        if not url:
            return 0
        try:
            answer = await post_webhook(url, params, auth_token=self.auth_token, proxy=self.proxy)
        except (OSError, EOFError, TimeoutError, ValueError):
            status = 0
        else:
            status = answer.status
        call.callbacks.append((url, params, status))
        return status

    async def _status(self, call: PlacedCall, event: str, call_status: str, **extra: str) -> None:
        create = call.create
        if event not in create.all("StatusCallbackEvent"):
            return
        params = self._params(call, call_status)
        params.update(extra)
        params["CallbackSource"] = "call-progress-events"
        await self._post(call, create.get("StatusCallback"), params)

    def _params(self, call: PlacedCall, call_status: str) -> dict[str, str]:
        create = call.create
        account = _CREATE.fullmatch(create.path)
        params = call_params(
            call.call_sid,
            account.group(1) if account else new_sid("AC"),
            from_=create.get("From"),
            to=create.get("To"),
        )
        params.update({"Direction": "outbound-api", "CallStatus": call_status})
        return params

    async def _drive(self, call: PlacedCall) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await self._place(call)
        finally:
            call.done.set()

    async def _place(self, call: PlacedCall) -> None:
        callee, create = call.callee, call.create
        await self._status(call, "initiated", "initiated")
        await asyncio.sleep(RING_S)
        await self._status(call, "ringing", "ringing")
        await asyncio.sleep(RING_S)
        if callee.recording is None:  # busy, no-answer, failed: it ends here
            await self._status(call, "completed", callee.final_status, CallDuration="0")
            return
        answered = time.monotonic()
        answer = await post_webhook(
            create.get("Url"),
            self._params(call, "in-progress"),
            auth_token=self.auth_token,
            proxy=self.proxy,
        )
        await self._status(call, "answered", "in-progress")
        twiml = answer.twiml
        if twiml is not None and twiml.stream_url is not None:
            stream = call._stream = EmulatedCall(
                twiml.stream_url,
                callee.recording,
                parameters=twiml.parameters,
                call_sid=call.call_sid,
                account_sid=self._params(call, "")["AccountSid"],
                auth_token=self.auth_token,
                proxy=self.proxy,
                hangup_at_ms=callee.hangup_at_ms,
            )
            async with asyncio.TaskGroup() as tg:
                amd = tg.create_task(self._amd(call, stream), name="amd")
                call.report = await stream.run(self.timeout)
                amd.cancel()
            if call.report.closed_by == "server" and twiml.connect_action:
                after = await post_webhook(
                    twiml.connect_action,
                    self._params(call, "in-progress"),
                    auth_token=self.auth_token,
                    proxy=self.proxy,
                )
                call.after_stream = after.twiml.verbs if after.twiml else (("Error", ""),)
        duration = str(int(time.monotonic() - answered))
        await self._status(call, "completed", "completed", CallDuration=duration)

    async def _amd(self, call: PlacedCall, stream: EmulatedCall) -> None:
        """``AsyncAmdStatusCallback`` at the callee's verdict time (the stream's clock)."""
        # The clock starts when the stream opens; the stream.run beside this bounds the wait.
        while not stream.report.t0:  # noqa: ASYNC110 (the stream exposes no open event)
            await asyncio.sleep(0.01)
        due = stream.report.t0 + call.callee.amd_at_ms / 1000.0
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        if call.create.get("AsyncAmd") != "true":
            return
        params = self._params(call, "in-progress")
        params["AnsweredBy"] = call.callee.answered_by
        params["MachineDetectionDuration"] = str(int(call.callee.amd_at_ms))
        await self._post(call, call.create.get("AsyncAmdStatusCallback"), params)
