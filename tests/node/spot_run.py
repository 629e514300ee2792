"""This test run's own mark for the Spot tests' stand-in ranks, so that concurrent runs (and any
process outside the suite) never look like each other's ranks.

The watch signals the user's processes whose SSH_CONNECTION names its node's address and ssh
port (node/spot_ranks.py). With a fixed port (22), a watch under test signalled every such
process of the same user on the machine, another run's stand-ins included. So the stand-ins
and the watch under test use a port this run holds bound for as long as it lives (bound to
every address, not listening): no other process can hold it meanwhile, so no other run uses it
and no real sshd listens on it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

_HELD = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
_HELD.bind(("0.0.0.0", 0))  # every address: a server on 127.0.0.x cannot get it either; never listens
RUN_PORT: int = _HELD.getsockname()[1]


def rank_env(ip: str, rank: int, *, port: int = RUN_PORT, client_port: int = 41000) -> dict[str, str]:
    """The environment OpenMPI and sshd give rank `rank` that came in over ssh to `ip`:`port`."""
    return {"OMPI_COMM_WORLD_RANK": str(rank), "SSH_CONNECTION": f"127.0.0.2 {client_port} {ip} {port}"}


def daemon(folder: Path, name: str, env: dict[str, str],
           child_env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    """A stand-in for OpenMPI's daemon on a node: a shell the kernel names `name` (a link of that
    name to sh in `folder`: the name is the executable's file name), in the ssh session `env`
    gives, running one child with `child_env` added; the daemon and its child's pid. The daemon
    ends when its child does."""
    link = folder / name
    link.symlink_to(shutil.which("sh") or "/bin/sh")
    child = " ".join(f"{k}='{v}'" for k, v in child_env.items())
    p = subprocess.Popen([str(link), "-c", f"{child} sleep 60 & echo $!; wait"],
                         env={"PATH": os.environ["PATH"], **env}, stdout=subprocess.PIPE)
    assert p.stdout is not None
    return p, int(p.stdout.readline())
