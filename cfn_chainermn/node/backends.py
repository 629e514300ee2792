"""The four things the agent needs from its surroundings, as small interfaces.

AWS (aws_backend.py, aws_platform.py): S3, EC2 + S3 discovery, CloudFormation signals, and an
EC2 instance (IMDSv2, useradd, EFS through /etc/fstab, systemd). Local (local_backend.py,
local_platform.py): a folder, a static inventory.json, no signal, and a node that is a folder on
this machine. agent.py picks one set once; the steps only see these methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cfn_chainermn.cluster.hostfile import Node

if TYPE_CHECKING:
    from cfn_chainermn.node.context import Context
    from cfn_chainermn.node.settings import Settings
    from cfn_chainermn.node.stack_build import Host


class Bucket(Protocol):
    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when it does not exist (other failures raise)."""

    def put(self, key: str, data: bytes, *, secret: bool = False) -> None:
        """Write an object (S3: always SSE-S3); `secret` ones are also owner-only in a local folder."""

    def delete(self, key: str) -> None:
        """Remove an object; one that does not exist is not an error."""


@dataclass(frozen=True)
class Discovery:
    """What one look at the cluster found: its live nodes with readiness, their published host
    keys (instance id -> "ssh-ed25519 AAAA..."), and how it was learned, in words ("" if nothing to
    say); on the master also what keeps live workers busy (instance id -> words, node/idle_marker.py)."""

    nodes: list[Node]
    host_keys: Mapping[str, str]
    how: str = ""
    busy: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


class Inventory(Protocol):
    def discover(self) -> Discovery:
        """The cluster as this node may know it now; raises (AwsError, AgentError) on failure, so
        the caller keeps its last good files."""

    def ssh_port(self, instance_id: str) -> int:
        """The node's sshd port (22 on AWS)."""


class Signaller(Protocol):
    def signal(self, success: bool, unique_id: str = "") -> str:
        """Report the outcome to whoever waits for this node (as `unique_id` where the node's id
        is unknown); returns what was done, in words."""


class Platform(Protocol):
    """The machine the node is: where its paths live, who it is, how its user, shared folder,
    system-wide hostfiles and refresh timer are set up. Each method returns a step's detail."""

    def path(self, node_path: str) -> Path:
        """Where an absolute path of the node lives on this machine."""

    def identify(self, ctx: Context) -> str:
        """Learn this node's id, address, type and subnet into ctx.settings (and the user's keys)."""

    def stand_in_id(self) -> str:
        """An id this node knows when identify failed, to sign its FAILURE with ("" if none)."""

    def guard_imds(self) -> str:
        """Only root reaches the instance metadata service (so jobs never hold the node's role),
        in place before the cluster user exists and again at every boot; fails when it cannot."""

    def user(self, ctx: Context) -> str:
        """The cluster user exists, its home too, and non-interactive ssh finds MPI; sets ctx.owner."""

    def search_path(self) -> tuple[str, str]:
        """PATH and LD_LIBRARY_PATH (may be "") that remote orted and python need."""

    def mpi_params(self, settings: Settings) -> list[str]:
        """MCA lines this machine adds to the common ones (before mca_base_env_list)."""

    def host_key(self, settings: Settings) -> Path:
        """This node's sshd host public key file (made first where the machine makes it)."""

    def sshd_keepalive(self) -> str:
        """sshd notices a client that vanished (ClientAliveInterval) and ends its session."""

    def shared_folder(self, ctx: Context) -> str:
        """The mount point ready and owned by the user: EFS mounted, or a plain folder."""

    def hostfile_copies(self) -> list[Path]:
        """OpenMPI's system-wide default hostfiles to keep equal to the user's hostfile."""

    def refresh_timer(self, ctx: Context) -> str | None:
        """Install what runs `node refresh` periodically; None where something else drives it."""

    def spot_watch(self, ctx: Context) -> str | None:
        """Install what polls the Spot interruption notice (node/spot.py); None where nothing does."""

    def chainer_stack_host(self, ctx: Context) -> Host | str:
        """Where and from what the Chainer stack is installed here (stack_hosts.py), or why not."""

    def gpu_stack(self, select: str, link: str) -> str:
        """CUDA 12 linked at `link` and the image's NCCL on the loader path (gpu-stack.sh, as root)."""
