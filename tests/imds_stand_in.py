"""An IMDSv2 stand-in on 127.0.0.1 (tokens required), for the node agent's tests and the UserData
bootstrap's: one simulated instance's metadata, with outages on demand."""

from __future__ import annotations

import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from http_reply import reply

TOKEN_HEADER = "X-aws-ec2-metadata-token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"


class _Server(ThreadingHTTPServer):
    """No SO_REUSEADDR: it only matters for binding a port again, and without it no other socket
    can share this port while it is bound but not listening yet (socket(7))."""

    allow_reuse_address = False


class ImdsStandIn:
    """IMDSv2 for one simulated instance: PUT a token first; any request without it gets 401."""

    def __init__(self, meta: dict[str, str], *, fail_first: int = 0, listening: bool = True) -> None:
        """`fail_first`: answer that many requests 503 first (an outage). `listening=False`: bound
        but refusing connections, as a service not up yet, until `listen()`: the port stays this
        stand-in's meanwhile (closing a server and binding its number again later lets another
        server on the machine take it in between)."""
        self.meta = meta
        self.fail_first = fail_first
        self.token = secrets.token_hex(8)
        self.requests: list[tuple[str, str, bool]] = []  # (method, path, carried a valid token)
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, code: int, body: str) -> None:
                reply(self, code, body)

            def _outage(self) -> bool:
                if stand_in.fail_first <= 0:
                    return False
                stand_in.fail_first -= 1
                stand_in.requests.append((self.command, self.path, False))
                self._reply(503, "service unavailable")
                return True

            def do_PUT(self) -> None:
                if self._outage():
                    return
                ok = self.path == "/latest/api/token" and bool(self.headers.get(TTL_HEADER))
                stand_in.requests.append(("PUT", self.path, ok))
                self._reply(200, stand_in.token) if ok else self._reply(400, "missing TTL header")

            def do_GET(self) -> None:
                if self._outage():
                    return
                ok = self.headers.get(TOKEN_HEADER) == stand_in.token
                stand_in.requests.append(("GET", self.path, ok))
                if not ok:
                    self._reply(401, "token required")
                    return
                key = self.path.removeprefix("/latest/meta-data/")
                if key in stand_in.meta:
                    self._reply(200, stand_in.meta[key])
                else:
                    self._reply(404, "not found")

        # bind now, listen later: a bound TCP socket that does not listen answers a SYN with RST
        self.server = _Server(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self.server.server_bind()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.closed = False
        # poll 0.05 s: shutdown() waits up to one poll (0.5 s by default, per server, per test)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        if listening:
            self.listen()

    def listen(self) -> None:
        """Start answering on the port bound at creation."""
        self.server.server_activate()
        self.thread.start()

    def close(self) -> None:
        """Stop serving; idempotent (tests stop a node's IMDS early, the fixture stops it again)
        and bounded: a shutdown that cannot finish must not hang the suite's teardown."""
        if self.closed:
            return
        self.closed = True
        if self.thread.ident is None:  # never listened: nothing serves, shutdown() would wait for ever
            self.server.server_close()
            return
        stopper = threading.Thread(target=self.server.shutdown, daemon=True)
        stopper.start()
        stopper.join(timeout=10)
        self.server.server_close()
