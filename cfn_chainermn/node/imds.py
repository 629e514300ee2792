"""Instance identity from IMDSv2: a session token first, then every read carries it.

There is no tokenless fallback on purpose: the template requires tokens (HttpTokens=required),
and the 2018 scripts' plain IMDSv1 GETs are what this replaces. The base URL is a parameter so
tests point it at a local stand-in; nothing here ever defaults to another host silently.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from cfn_chainermn.errors import AgentError

DEFAULT_URL = "http://169.254.169.254"
TOKEN_TTL = "21600"
WAIT_S = 180.0  # a few minutes in all: well inside the stack's 30-minute creation timeout


@dataclass(frozen=True)
class Identity:
    """What a node needs to know about itself."""

    instance_id: str
    private_ip: str
    region: str
    instance_type: str
    subnet_cidr: str
    public_keys: list[str] = field(default_factory=list)


class Imds:
    """A tiny IMDSv2 client (standard library only: it runs before anything else works).

    Early in a boot the metadata service may not answer yet (the network is still coming up),
    or answer 429/5xx (or not HTTP at all) for a while: every request is retried with backoff until `wait` seconds
    after the first one, then AgentError says for how long and how it failed. A refusal (4xx
    other than 429) is an answer, not an outage, and is not retried."""

    def __init__(self, base_url: str = DEFAULT_URL, *, timeout: float = 2.0, wait: float = WAIT_S,
                 first_delay: float = 0.5, max_delay: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.wait = wait
        self.first_delay, self.max_delay = first_delay, max_delay
        self.tries = 0
        self._deadline: float | None = None
        self._token = ""

    def _open(self, req: urllib.request.Request) -> str:
        if self._deadline is None:  # one budget for the whole identity, from the first request
            self._deadline = time.monotonic() + self.wait
        delay = self.first_delay
        while True:
            self.tries += 1
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return str(resp.read().decode("utf-8"))
            except urllib.error.HTTPError as exc:
                if exc.code != 429 and exc.code < 500:
                    raise
                last = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                last = str(getattr(exc, "reason", exc))
            except http.client.HTTPException as exc:  # something that is not HTTP (BadStatusLine): not IMDS yet
                last = f"not an HTTP reply ({type(exc).__name__}: {str(exc)[:60]})"
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise AgentError(f"instance metadata service at {self.base_url} did not answer within "
                                 f"{self.wait:g} s ({self.tries} tries, last: {last})")
            time.sleep(min(delay, left))
            delay = min(delay * 2, self.max_delay)

    def token(self) -> str:
        if not self._token:
            req = urllib.request.Request(f"{self.base_url}/latest/api/token", method="PUT",
                                         headers={"X-aws-ec2-metadata-token-ttl-seconds": TOKEN_TTL})
            try:
                self._token = self._open(req).strip()
            except urllib.error.HTTPError as exc:
                raise AgentError(f"IMDSv2 token request refused: HTTP {exc.code}") from exc
        return self._token

    def get(self, path: str, *, missing_ok: bool = False) -> str:
        """GET latest/meta-data/PATH with the token; "" for a 404 when `missing_ok`."""
        req = urllib.request.Request(f"{self.base_url}/latest/meta-data/{path}",
                                     headers={"X-aws-ec2-metadata-token": self.token()})
        try:
            return self._open(req).strip()
        except urllib.error.HTTPError as exc:
            if exc.code == 404 and missing_ok:
                return ""
            raise AgentError(f"instance metadata {path}: HTTP {exc.code}") from exc

    def identity(self) -> Identity:
        mac = self.get("mac")
        keys = []
        for line in self.get("public-keys/", missing_ok=True).splitlines():
            index = line.split("=", 1)[0].strip()
            if index.isdigit():
                key = self.get(f"public-keys/{index}/openssh-key", missing_ok=True)
                if key:
                    keys.append(key)
        return Identity(
            instance_id=self.get("instance-id"),
            private_ip=self.get("local-ipv4"),
            region=self.get("placement/region"),
            instance_type=self.get("instance-type"),
            subnet_cidr=self.get(f"network/interfaces/macs/{mac}/subnet-ipv4-cidr-block"),
            public_keys=keys,
        )
