"""One way the tests' HTTP stand-ins (IMDS, CloudFormation's front, scripted endpoints) answer a request."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler


def reply(handler: BaseHTTPRequestHandler, code: int, body: str | bytes, content_type: str | None = None) -> None:
    """Status, optional Content-Type, Content-Length, body: what botocore and the node agent's client read."""
    data = body.encode() if isinstance(body, str) else body
    handler.send_response(code)
    if content_type:
        handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
