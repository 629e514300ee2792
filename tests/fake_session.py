"""A boto3 session stand-in that hands out botocore-Stubber'd clients, as aws.client() asks for them."""

from __future__ import annotations

from typing import Any


class FakeSession:
    """`clients` by service name; `region_name` as a real session reports it."""

    def __init__(self, clients: dict[str, Any], region_name: str | None = "us-east-1") -> None:
        self.clients = clients
        self.region_name = region_name

    def client(self, service: str, endpoint_url: str | None = None, config: Any = None) -> Any:
        return self.clients[service]
