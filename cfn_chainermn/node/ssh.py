"""Cluster SSH: the shared user key, authorized_keys, host keys, known_hosts and ssh config.

The master makes one ed25519 key and uploads it (encrypted) under cluster-key/; workers wait
for it with backoff. Every node publishes its host key under nodes/<id>/ (the master also under
cluster-key/, for the CLI to pin), and known_hosts lists all of them, so `StrictHostKeyChecking
yes` holds inside the cluster (the 2018 scripts turned it off and pointed known_hosts at /dev/null).
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from cfn_chainermn.cluster.hostfile import Node
from cfn_chainermn.cluster.inventory import HOST_KEY_NAME
from cfn_chainermn.errors import AgentError, CfnChainermnError
from cfn_chainermn.names import CLUSTER_PRIVATE_KEY, CLUSTER_PUBLIC_KEY, MASTER_HOST_KEY, NODES_PREFIX
from cfn_chainermn.node.context import Context

BEGIN = "# cfn-chainermn: managed keys begin"
END = "# cfn-chainermn: managed keys end"


def generate_key(comment: str) -> tuple[bytes, bytes]:
    """A new ed25519 key pair in OpenSSH format (private, public), via ssh-keygen."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "id_ed25519"
        proc = subprocess.run(["ssh-keygen", "-t", "ed25519", "-N", "", "-q", "-C", comment, "-f", str(path)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise AgentError(f"ssh-keygen failed: {proc.stderr.strip()}")
        return path.read_bytes(), path.with_suffix(".pub").read_bytes()


def master_key(ctx: Context) -> tuple[bytes, bytes, str]:
    """The cluster key: reuse the published one (re-runs), else this node's, else a new one."""
    priv, pub = ctx.bucket.get(CLUSTER_PRIVATE_KEY), ctx.bucket.get(CLUSTER_PUBLIC_KEY)
    if priv and pub:
        return priv, pub, "reused the published cluster key"
    files = ctx.files()  # no-follow: a linked ~/.ssh/id_ed25519 must not publish root's key
    priv, pub = files.read(".ssh/id_ed25519"), files.read(".ssh/id_ed25519.pub")
    if priv is not None and pub is not None:
        how = "published this node's existing key"
    else:
        priv, pub = generate_key(f"cfn-chainermn@{ctx.settings.stack or 'local'}")
        how = "generated and published a new ed25519 cluster key"
    ctx.bucket.put(CLUSTER_PRIVATE_KEY, priv, secret=True)
    ctx.bucket.put(CLUSTER_PUBLIC_KEY, pub)
    return priv, pub, how


def wait_for_key(ctx: Context, *, sleep: float = 0.5, cap: float = 15.0) -> tuple[bytes, bytes, str]:
    """Workers: fetch the master's key, backing off until it exists or --key-wait passes."""
    deadline = time.monotonic() + ctx.settings.key_wait
    started, last_error = time.monotonic(), ""
    while True:
        try:
            priv, pub = ctx.bucket.get(CLUSTER_PRIVATE_KEY), ctx.bucket.get(CLUSTER_PUBLIC_KEY)
            if priv and pub:
                return priv, pub, f"fetched the cluster key after {time.monotonic() - started:.1f} s"
        except CfnChainermnError as exc:
            last_error = f" (last error: {exc})"
        if time.monotonic() + sleep > deadline:
            where = f"{ctx.settings.bucket or ctx.settings.state_dir}/{CLUSTER_PRIVATE_KEY}"
            raise AgentError(f"cluster key {where} did not appear within {ctx.settings.key_wait:g} s{last_error}; "
                             "is the master up? its log is under logs/<master id>/agent.log in the bucket")
        ctx.log.info(f"waiting for the cluster key ({sleep:.1f} s)")
        time.sleep(sleep)
        sleep = min(sleep * 2, cap)


def merge_authorized(existing: str, managed: list[str]) -> str:
    """authorized_keys with our block replaced and the user's own lines kept."""
    kept, inside = [], False
    for line in existing.splitlines():
        if line == BEGIN:
            inside = True
        elif line == END:
            inside = False
        elif not inside:
            kept.append(line)
    block = [BEGIN, *dict.fromkeys(k.strip() for k in managed if k.strip()), END]
    return "".join(x + "\n" for x in [*block, *kept])


def host_public_key(ctx: Context) -> str:
    """This node's sshd host key (the platform makes one first where sshd has none yet)."""
    path = ctx.platform.host_key(ctx.settings)
    if not path.is_file():
        raise AgentError(f"no ssh host key at {path}; sshd needs one before the node can join")
    return " ".join(path.read_text(encoding="utf-8").split()[:2])


def ssh_config(ctx: Context) -> str:
    home = ctx.settings.home_dir()
    lines = [
        "# written by the cfn-chainermn node agent: host keys are checked against known_hosts",
        "Host *",
        f"    IdentityFile {home}/.ssh/id_ed25519",
        f"    UserKnownHostsFile {home}/.ssh/known_hosts",
        "    StrictHostKeyChecking yes",
        "    BatchMode yes",
        "    ConnectTimeout 5",
    ]
    if ctx.settings.ssh_port != 22:
        lines.append(f"    Port {ctx.settings.ssh_port}")
    return "\n".join(lines) + "\n"


def setup(ctx: Context) -> str:
    """The ssh step: cluster key in place, authorized_keys, host key published, ssh config."""
    s = ctx.settings
    priv, pub, how = master_key(ctx) if s.role == "master" else wait_for_key(ctx)
    files = ctx.files()  # never through a link the user made (homefiles.py)
    with files.folder(".ssh", mode=0o700, enforce=True):
        pass  # owner and mode set on the folder's descriptor, every boot
    files.write(".ssh/id_ed25519", priv, 0o600, folder_mode=0o700)
    files.write(".ssh/id_ed25519.pub", pub, 0o644, folder_mode=0o700)
    existing = files.read_text(".ssh/authorized_keys")
    files.write(".ssh/authorized_keys", merge_authorized(existing, [pub.decode(), *ctx.public_keys]), 0o600,
                folder_mode=0o700)
    files.write(".ssh/config", ssh_config(ctx), 0o600, folder_mode=0o700)
    host_key = host_public_key(ctx).encode() + b"\n"
    # nodes/<id>/ feeds known_hosts inside the cluster; the master's copy under cluster-key/ (which
    # workers cannot write) is the one the CLI pins, so no worker can stand in for the master.
    keys = [f"{NODES_PREFIX}{s.node_id}/{HOST_KEY_NAME}"] + ([MASTER_HOST_KEY] if s.role == "master" else [])
    for key in keys:
        if ctx.bucket.get(key) != host_key:
            ctx.bucket.put(key, host_key)
    return f"{how}; host key published"


def known_hosts(ctx: Context, nodes: list[Node], keys: Mapping[str, str]) -> str:
    """One line per live node that published its host key ("[ip]:port" off port 22)."""
    lines = []
    for node in sorted(nodes, key=lambda n: (n.private_ip, n.instance_id)):
        key = keys.get(node.instance_id)
        if key and node.private_ip:
            port = ctx.inventory.ssh_port(node.instance_id)
            host = node.private_ip if port == 22 else f"[{node.private_ip}]:{port}"
            lines.append(f"{host} {key}\n")
    return "".join(lines)
