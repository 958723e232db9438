"""A local stand-in for Twilio's REST Calls API: records each update with its arrival time.

With ``hang`` set it reads each request and never answers (until the fake is closed).
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


@dataclass
class RestCall:
    at: float  # time.monotonic()
    path: str
    auth: str  # "user:password"
    form: dict[str, str]


@dataclass
class FakeTwilioRest:
    url: str
    requests: list[RestCall] = field(default_factory=list)
    status: int = 200
    # "user:password" pairs Basic auth may carry (account SID and token, or an API key):
    # any other gets 401, as Twilio answers. None: not checked.
    credentials: set[str] | None = None
    hang: bool = False  # read the request, then never answer
    released: threading.Event = field(default_factory=threading.Event)


@contextmanager
def running_rest() -> Iterator[FakeTwilioRest]:
    fake = FakeTwilioRest("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
            auth = self.headers.get("Authorization", "").removeprefix("Basic ")
            fake.requests.append(
                RestCall(
                    time.monotonic(),
                    self.path,
                    base64.b64decode(auth).decode() if auth else "",
                    {k: v[0] for k, v in parse_qs(body).items()},
                )
            )
            if fake.hang:
                fake.released.wait()  # until the fake closes: no answer before
                return
            allowed = fake.credentials is None or fake.requests[-1].auth in fake.credentials
            self.send_response(fake.status if allowed else 401)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"sid": "CA", "status": "completed"}')

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.released.set()
        server.shutdown()
        server.server_close()
        thread.join(5)
