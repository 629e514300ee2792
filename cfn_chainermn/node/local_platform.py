"""The node as a folder of this machine (`cfn-chainermn local up`): paths are used as given, the
cluster user must exist already, the mount point is a shared folder, and `local up` (not a timer)
runs `node refresh`. The agent's steps are the same as on AWS; only these answers differ."""

from __future__ import annotations

import os
import pwd
import sys
from pathlib import Path

from cfn_chainermn.errors import AgentError
from cfn_chainermn.node import stack_hosts
from cfn_chainermn.node.context import Context
from cfn_chainermn.node.mount_path import own_mount_point
from cfn_chainermn.node.settings import Settings
from cfn_chainermn.node.stack_build import Host
from cfn_chainermn.node.system import STD_PATH

LOCAL_SUBNET = "127.0.0.0/8"  # every local node listens on a 127.0.0.x address


class LocalPlatform:
    def path(self, node_path: str) -> Path:
        return Path(node_path)

    def identify(self, ctx: Context) -> str:
        """The identity `local up` passed in flags; the subnet is the loopback network."""
        s = ctx.settings
        s.instance_type = s.instance_type or "local"
        s.subnet_cidr = LOCAL_SUBNET
        return f"local node {s.node_id} at {s.private_ip}"

    def stand_in_id(self) -> str:
        """Never needed: a local node's id is a flag, so identify cannot lose it."""
        return ""

    def guard_imds(self) -> str:
        """Nothing to guard: a local node has no instance role and no metadata service."""
        return "no instance metadata service on a local node"

    def user(self, ctx: Context) -> str:
        """The user is not created here: `local up` does that when it runs as root."""
        s = ctx.settings
        home = ctx.home()
        try:
            entry = pwd.getpwnam(s.user)
        except KeyError:
            raise AgentError(f"user {s.user!r} does not exist; `local up` creates it when run as root") from None
        ctx.owner = (entry.pw_uid, entry.pw_gid)
        home.mkdir(parents=True, exist_ok=True)
        return f"user {s.user} (uid {entry.pw_uid}), home {home}"

    def search_path(self) -> tuple[str, str]:
        """The agent's interpreter is the project venv, the one jobs use: it goes first."""
        agent_bin = str(Path(sys.executable).parent)
        bins = [agent_bin, *STD_PATH, *os.environ.get("PATH", "").split(os.pathsep)]
        return ":".join(dict.fromkeys(b for b in bins if b)), ""

    def sshd_keepalive(self) -> str:
        return "sshd keepalive in the node's sshd_config (local up writes it)"

    def mpi_params(self, settings: Settings) -> list[str]:
        """Many ranks share few cores: no binding, yield when idle; sshd off port 22 is named."""
        lines = ["hwloc_base_binding_policy = none", "mpi_yield_when_idle = 1"]
        if settings.ssh_port != 22:
            lines.append(f"plm_rsh_args = -p {settings.ssh_port}")
        return lines

    def host_key(self, settings: Settings) -> Path:
        return Path(settings.host_key)

    def shared_folder(self, ctx: Context) -> str:
        """The local cluster's shared/, checked from / as the state folder is (sticky /tmp allowed)."""
        own_mount_point(Path("/"), ctx.settings.mount_point, ctx.owner, sticky_ok=True)
        return f"shared folder {ctx.settings.mount_point}"

    def hostfile_copies(self) -> list[Path]:
        """None: the nodes share this machine's OpenMPI, which is not the cluster's to change."""
        return []

    def chainer_stack_host(self, ctx: Context) -> Host | str:
        """From --stack-wheelhouse only, into the node's folder, without the GPU parts."""
        return stack_hosts.local_host(ctx)

    def gpu_stack(self, select: str, link: str) -> str:
        raise AgentError("a local node has no GPU: gpu-stack.sh is not run")

    def refresh_timer(self, ctx: Context) -> str | None:
        """None: `local up` runs `node refresh` itself."""
        return None

    def spot_watch(self, ctx: Context) -> str | None:
        """None: no metadata service says a local node is Spot; `node spot-watch --backend local
        --imds-url URL` runs the same watch against a stand-in (tests/local)."""
        return None
