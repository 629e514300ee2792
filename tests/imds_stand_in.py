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


class ImdsStandIn:
    """IMDSv2 for one simulated instance: PUT a token first; any request without it gets 401."""

    def __init__(self, meta: dict[str, str], *, port: int = 0, fail_first: int = 0) -> None:
        """`fail_first`: answer that many requests 503 first (an outage); `port`: reuse one."""
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

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.closed = False
        # poll 0.05 s: shutdown() waits up to one poll (0.5 s by default, per server, per test)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop serving; idempotent (tests stop a node's IMDS early, the fixture stops it again)
        and bounded: a shutdown that cannot finish must not hang the suite's teardown."""
        if self.closed:
            return
        self.closed = True
        stopper = threading.Thread(target=self.server.shutdown, daemon=True)
        stopper.start()
        stopper.join(timeout=10)
        self.server.server_close()
