"""A CloudFormation front on 127.0.0.1 for the UserData bootstrap's tests.

It checks every request's SigV4 signature with botocore's own signer (so the bootstrap's
standard-library signing is held to AWS's algorithm, not to itself), answers the one action
moto lacks (SignalResource) and records it, and passes everything else to moto, or serves
GetTemplate from a given body when there is no moto.
"""

from __future__ import annotations

import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from xml.sax.saxutils import escape

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from http_reply import reply

NS = "http://cloudformation.amazonaws.com/doc/2010-05-15/"


@dataclass
class CfnFront:
    creds: Credentials
    region: str = "us-east-1"
    moto_url: str = ""
    template: str = ""  # served for GetTemplate when there is no moto
    error: tuple[int, str, str] | None = None  # (status, code, message) for every call
    signals: list[dict[str, str]] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        front = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, code: int, body: str) -> None:
                reply(self, code, body, "text/xml")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                params = dict(urllib.parse.parse_qsl(body.decode()))
                front.actions.append(params.get("Action", ""))
                if not front.signed_right(self.path, dict(self.headers.items()), body):
                    self._reply(403, _error("SignatureDoesNotMatch", "signature mismatch"))
                elif front.error:
                    status, code, message = front.error
                    self._reply(status, _error(code, message))
                elif params.get("Action") == "SignalResource":
                    front.signals.append(params)
                    self._reply(200, f'<SignalResourceResponse xmlns="{NS}"><ResponseMetadata><RequestId>r'
                                     "</RequestId></ResponseMetadata></SignalResourceResponse>")
                elif front.moto_url:
                    self._reply(*front.forward(body, dict(self.headers.items())))
                elif params.get("Action") == "GetTemplate":
                    self._reply(200, f'<GetTemplateResponse xmlns="{NS}"><GetTemplateResult><TemplateBody>'
                                     f"{escape(front.template)}</TemplateBody></GetTemplateResult>"
                                     "</GetTemplateResponse>")
                else:
                    self._reply(400, _error("InvalidAction", params.get("Action", "")))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()  # shutdown() waits a poll

    def signed_right(self, path: str, headers: dict[str, str], body: bytes) -> bool:
        """Recompute the signature with botocore for the headers the request says it signed."""
        lower = {k.lower(): v for k, v in headers.items()}
        auth = lower.get("authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            return False
        fields = dict(part.strip().split("=", 1) for part in auth[len("AWS4-HMAC-SHA256 "):].split(","))
        signed = fields["SignedHeaders"].split(";")
        request = AWSRequest(method="POST", url=f"http://{lower['host']}{path}", data=body,
                             headers={h: lower[h] for h in signed})
        request.context["timestamp"] = lower["x-amz-date"]
        signer = SigV4Auth(self.creds, "cloudformation", self.region)
        canonical = signer.canonical_request(request)
        expected = signer.signature(signer.string_to_sign(request, canonical), request)
        token_signed = not self.creds.token or ("x-amz-security-token" in signed
                                                and lower["x-amz-security-token"] == self.creds.token)
        return (fields["Signature"] == expected and token_signed
                and fields["Credential"].startswith(self.creds.access_key + "/"))

    def forward(self, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        keep = {k: v for k, v in headers.items() if k.lower() in ("authorization", "content-type", "x-amz-date",
                                                                   "x-amz-security-token")}
        req = urllib.request.Request(self.moto_url + "/", data=body, headers=keep, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _error(code: str, message: str) -> str:
    return (f'<ErrorResponse xmlns="{NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
            f"<Message>{escape(message)}</Message></Error><RequestId>r</RequestId></ErrorResponse>")
