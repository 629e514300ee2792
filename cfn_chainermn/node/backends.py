"""The three things the agent needs from its surroundings, as small interfaces.

AWS (aws_backend.py): S3, EC2 + S3 discovery, CloudFormation signals. Local (local_backend.py):
a folder, a static inventory.json, no signal. The steps only see these methods.
"""

from __future__ import annotations

from typing import Protocol

from cfn_chainermn.cluster.hostfile import Node


class Bucket(Protocol):
    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when it does not exist (other failures raise)."""

    def put(self, key: str, data: bytes, *, secret: bool = False) -> None:
        """Write an object (S3: always SSE-S3); `secret` ones are also owner-only in a local folder."""

    def delete(self, key: str) -> None:
        """Remove an object; one that does not exist is not an error."""


class Inventory(Protocol):
    def list_nodes(self) -> list[Node]:
        """The cluster's live nodes with readiness; raises AwsError-like errors on failure."""

    def host_keys(self) -> dict[str, str]:
        """instance id -> published host public key."""

    def ssh_port(self, instance_id: str) -> int:
        """The node's sshd port (22 on AWS)."""


class Signaller(Protocol):
    def signal(self, success: bool) -> str:
        """Report the outcome to whoever waits for this node; returns what was done, in words."""
