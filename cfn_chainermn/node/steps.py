"""The agent's steps. Each one is idempotent and returns a one-line detail for the state file,
or raises a CfnChainermnError whose message is the reason signalled to CloudFormation."""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import sys
import time
from pathlib import Path

from cfn_chainermn.cluster import hostfile
from cfn_chainermn.cluster.inventory import READY_NAME
from cfn_chainermn.errors import AgentError
from cfn_chainermn.names import NODES_PREFIX
from cfn_chainermn.node import ssh
from cfn_chainermn.node.context import Context
from cfn_chainermn.node.imds import Imds
from cfn_chainermn.node.state import now
from cfn_chainermn.node.system import write_atomic

# OpenMPI's system-wide default hostfile where the AMIs keep it (DLAMI, the 2018 AMI, Debian).
DEFAULT_HOSTFILES = (
    "/opt/amazon/openmpi/etc/openmpi-default-hostfile",
    "/usr/local/mpi/etc/openmpi-default-hostfile",
    "/etc/openmpi/openmpi-default-hostfile",
)
BIN_DIRS = ("/opt/amazon/openmpi/bin", "/opt/amazon/efa/bin", "/usr/local/cuda/bin", "/usr/local/mpi/bin")
LIB_DIRS = ("/opt/amazon/openmpi/lib64", "/opt/amazon/openmpi/lib", "/opt/amazon/efa/lib",
            "/usr/local/cuda/lib64", "/usr/local/cuda/extras/CUPTI/lib64", "/usr/local/mpi/lib")
STD_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
ENV_FILE = ".cfn-chainermn.env"
AMI_MANIFEST = "/etc/cfn-chainermn/ami-manifest.json"  # written by the AMI recipe
EFS_OPTIONS = "nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport,_netdev"
UNIT = "cfn-chainermn-refresh"
MOUNT_DEADLINE_S = 600.0  # a new mount target can take minutes to answer
MOUNT_FIRST_DELAY_S = 2.0


def identity(ctx: Context, imds: Imds | None) -> str:
    s = ctx.settings
    if s.local:
        s.instance_type = s.instance_type or "local"
        s.subnet_cidr = "127.0.0.0/8"
        return f"local node {s.node_id} at {s.private_ip}"
    if imds is None:
        raise AgentError("no instance metadata client")
    ident = imds.identity()
    s.node_id, s.private_ip, s.instance_type = ident.instance_id, ident.private_ip, ident.instance_type
    s.subnet_cidr, s.region = ident.subnet_cidr, s.region or ident.region
    ctx.public_keys = ident.public_keys
    ctx.state.node_id = s.node_id
    return f"{s.node_id} {s.instance_type} at {s.private_ip} in {s.subnet_cidr} ({s.region}), IMDSv2"


def search_path(ctx: Context) -> tuple[str, str]:
    """PATH and LD_LIBRARY_PATH that the remote orted and python need (only dirs that exist).

    On an image built by `cfn-chainermn ami build`, the manifest names the Chainer stack's
    interpreter, MPI and CUDA dirs: they go first, and the agent's own interpreter (a venv of
    its own there) goes last so `python` in a job is the training stack's. Locally the agent's
    interpreter is the project venv, the one jobs use.
    """
    def exists(d: str) -> bool:
        return (Path(d) if ctx.settings.local else ctx.system.path(d)).is_dir()

    agent_bin = str(Path(sys.executable).parent)
    if ctx.settings.local:
        bins = [agent_bin, *STD_PATH, *os.environ.get("PATH", "").split(os.pathsep)]
        return ":".join(dict.fromkeys(b for b in bins if b)), ""
    first_bins, first_libs = _manifest_dirs(ctx)
    bins = [*first_bins, *BIN_DIRS, *STD_PATH, agent_bin]
    libs = [*first_libs, *LIB_DIRS]
    always = {*STD_PATH, agent_bin}  # the running interpreter's dir exists by definition
    return (":".join(dict.fromkeys(b for b in bins if exists(b) or b in always)),
            ":".join(dict.fromkeys(d for d in libs if exists(d))))


def _manifest_dirs(ctx: Context) -> tuple[list[str], list[str]]:
    """env.PATH / env.LD_LIBRARY_PATH from the AMI manifest; empty on a stock image."""
    try:
        data = json.loads(ctx.system.path(AMI_MANIFEST).read_text(encoding="utf-8"))
        env = data.get("env", {}) if isinstance(data, dict) else {}
        bins = [str(d) for d in env.get("PATH", []) if isinstance(d, str)]
        libs = [str(d) for d in env.get("LD_LIBRARY_PATH", []) if isinstance(d, str)]
    except (OSError, ValueError, AttributeError):
        return [], []
    return bins, libs


def user(ctx: Context) -> str:
    s = ctx.settings
    home = ctx.home()
    if s.local:
        try:
            entry = pwd.getpwnam(s.user)
        except KeyError:
            raise AgentError(f"user {s.user!r} does not exist; `local up` creates it when run as root") from None
        ctx.owner = (entry.pw_uid, entry.pw_gid)
        home.mkdir(parents=True, exist_ok=True)
        return f"user {s.user} (uid {entry.pw_uid}), home {home}"
    ctx.owner = ctx.system.ensure_user(s.user, s.home_dir())
    path, libs = search_path(ctx)
    env = f"export PATH={path}\n" + (f"export LD_LIBRARY_PATH={libs}\n" if libs else "")
    write_atomic(home / ENV_FILE, env, 0o644, ctx.owner)
    # Debian/Ubuntu .bashrc returns early when not interactive; ssh commands (orted) need this first.
    source = f'. "$HOME/{ENV_FILE}"  # cfn-chainermn: PATH for non-interactive ssh'
    bashrc = home / ".bashrc"
    old = bashrc.read_text(encoding="utf-8") if bashrc.exists() else ""
    if source not in old.splitlines():
        write_atomic(bashrc, source + "\n" + old, 0o644, ctx.owner)
    return f"user {s.user} (no sudo), PATH for non-interactive ssh in ~/{ENV_FILE}"


def mca_params(ctx: Context) -> str:
    s = ctx.settings
    path, libs = search_path(ctx)
    env = f"PATH={path}" + (f";LD_LIBRARY_PATH={libs}" if libs else "")
    lines = [
        "# written by the cfn-chainermn node agent",
        f"btl_tcp_if_include = {s.subnet_cidr}",
        f"oob_tcp_if_include = {s.subnet_cidr}",
        "plm_rsh_no_tree_spawn = 1",
        f"orte_default_hostfile = {s.home_dir()}/hostfile",
        "rtc = ^hwloc",
    ]
    if s.local:
        lines += ["hwloc_base_binding_policy = none", "mpi_yield_when_idle = 1"]
        if s.ssh_port != 22:
            lines.append(f"plm_rsh_args = -p {s.ssh_port}")
    lines.append(f"mca_base_env_list = {env}")
    return "\n".join(lines) + "\n"


def ssh_step(ctx: Context) -> str:
    detail = ssh.setup(ctx)
    write_atomic(ctx.home() / ".openmpi" / "mca-params.conf", mca_params(ctx), 0o644, ctx.owner)
    return detail


def fstab_line(fs_id: str, region: str, mount_point: str) -> str:
    return f"{fs_id}.efs.{region}.amazonaws.com:/ {mount_point} nfs4 {EFS_OPTIONS} 0 0"


def efs(ctx: Context) -> str:
    s = ctx.settings
    target = Path(s.mount_point) if s.local else ctx.system.path(s.mount_point)
    target.mkdir(parents=True, exist_ok=True)
    if s.local or not s.efs_id:
        if ctx.owner[0] >= 0:
            os.chown(target, *ctx.owner)
        return f"shared folder {s.mount_point}" if s.local else f"no EFS; {s.mount_point} is a local directory"
    ctx.system.add_fstab(fstab_line(s.efs_id, s.region, s.mount_point))
    deadline_s = MOUNT_DEADLINE_S
    deadline, delay = time.monotonic() + deadline_s, MOUNT_FIRST_DELAY_S
    while not ctx.system.is_mounted(s.mount_point):
        try:
            ctx.system.mount(s.mount_point)
        except AgentError as exc:
            if time.monotonic() + delay > deadline:
                raise AgentError(f"EFS {s.efs_id} not mountable at {s.mount_point} after {deadline_s:g} s: {exc}; "
                                 "check the mount target's security group allows NFS (2049) from the nodes") from exc
            ctx.log.info(f"EFS mount target not answering yet ({exc}); retrying in {delay:g} s")
            time.sleep(delay)
            delay = min(delay * 2, 30.0)
    os.chown(target, *ctx.owner)
    return f"EFS {s.efs_id} mounted at {s.mount_point} via /etc/fstab"


def retract_ready(ctx: Context) -> str:
    """Delete this node's ready marker at the start of a boot (right after identity names the
    node), so a boot that fails later leaves the node out of every hostfile instead of ready
    from an earlier boot. The ready step publishes it again once every step succeeded."""
    key = f"{NODES_PREFIX}{ctx.settings.node_id}/{READY_NAME}"
    ctx.retracted_ready = ctx.bucket.get(key)
    if ctx.retracted_ready is None:
        return "not marked ready"
    ctx.bucket.delete(key)
    return f"readiness retracted ({key}) until every step succeeds"


def ready(ctx: Context) -> str:
    s = ctx.settings
    key = f"{NODES_PREFIX}{s.node_id}/{READY_NAME}"
    mark = {"instance_id": s.node_id, "private_ip": s.private_ip, "role": s.role, "instance_type": s.instance_type}
    old = ctx.retracted_ready
    try:
        same = old is not None and {k: json.loads(old).get(k) for k in mark} == mark
    except ValueError:
        same = False
    body = old if old is not None and same else json.dumps({**mark, "time": now()}, sort_keys=True).encode()
    ctx.bucket.put(key, body)  # the marker retracted at boot start comes back only here
    ctx.state.ready = True
    return f"marked ready at {key}"


def cluster_files(ctx: Context) -> str:
    """Hostfile(s) and known_hosts from discovery. Raises before writing anything on API errors.

    Under a lock, so that of several writers of one file the last also saw the others' readiness.
    """
    lock = ctx.settings.lock_path()
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        return _cluster_files(ctx)


def _cluster_files(ctx: Context) -> str:
    nodes = ctx.inventory.list_nodes()
    keys = ctx.inventory.host_keys()
    text = hostfile.render(nodes)
    write_atomic(ctx.home() / "hostfile", text, 0o644, ctx.owner)
    write_atomic(ctx.home() / ".ssh" / "known_hosts", ssh.known_hosts(ctx, nodes, keys), 0o644, ctx.owner)
    if not ctx.settings.local:
        for name in DEFAULT_HOSTFILES:
            path = ctx.system.path(name)
            if path.parent.is_dir():
                write_atomic(path, text, 0o644)
    members = hostfile.members(nodes)
    return f"{len(members)} ready nodes, {sum(n.slots for n in members)} slots"


def timer(ctx: Context) -> str:
    """systemd timer running `node refresh` every 30 s (AWS only; `local up` drives refresh)."""
    unit_dir = ctx.system.path("/etc/systemd/system")
    service = (f"[Unit]\nDescription=cfn-chainermn hostfile refresh\nAfter=network-online.target\n\n"
               f"[Service]\nType=oneshot\nExecStart={sys.executable} -m cfn_chainermn node refresh\n")
    timer_unit = ("[Unit]\nDescription=cfn-chainermn hostfile refresh every 30 s\n\n"
                  "[Timer]\nOnBootSec=30\nOnUnitActiveSec=30\nAccuracySec=5\n\n[Install]\nWantedBy=timers.target\n")
    changed = write_atomic(unit_dir / f"{UNIT}.service", service, 0o644)
    changed = write_atomic(unit_dir / f"{UNIT}.timer", timer_unit, 0o644) or changed
    if changed:
        ctx.system.run(["systemctl", "daemon-reload"])
        ctx.system.run(["systemctl", "enable", "--now", f"{UNIT}.timer"])
    return f"{UNIT}.timer every 30 s"
