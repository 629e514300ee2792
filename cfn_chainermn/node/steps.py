"""The agent's boot, step by step, the same on AWS and on a local cluster: where the two differ,
the step asks ctx.platform (aws_platform.py, local_platform.py) or another back end.

Each step is idempotent and returns a one-line detail for the state file, or raises a
CfnChainermnError whose message is the reason signalled to CloudFormation.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Callable

from cfn_chainermn.cluster import hostfile
from cfn_chainermn.cluster.inventory import READY_NAME
from cfn_chainermn.jobs.folder import JOBS
from cfn_chainermn.names import NODES_PREFIX
from cfn_chainermn.node import chainer_stack, ssh
from cfn_chainermn.node.context import Context
from cfn_chainermn.node.homefiles import HomeFiles
from cfn_chainermn.node.state import now
from cfn_chainermn.node.system import write_atomic


def plan(ctx: Context) -> list[tuple[str, Callable[[], str]]]:
    """The boot steps in order (their names are state.STEPS, less the signal the agent sends)."""
    return [
        ("identity", lambda: identity(ctx)),
        ("imds", ctx.platform.guard_imds),  # before the cluster user exists: no job runs unguarded
        ("stack", lambda: chainer_stack.step(ctx)),  # before user, whose env file names the stack
        ("user", lambda: ctx.platform.user(ctx)),
        ("ssh", lambda: ssh_step(ctx)),
        ("efs", lambda: shared_step(ctx)),
        ("ready", lambda: ready(ctx)),
        ("hostfile", lambda: hostfile_step(ctx)),
    ]


def identity(ctx: Context) -> str:
    """Who this node is; then the readiness an earlier boot left is retracted."""
    return f"{ctx.platform.identify(ctx)}; {retract_ready(ctx)}"


def mca_params(ctx: Context) -> str:
    s = ctx.settings
    path, libs = ctx.platform.search_path()
    env = f"PATH={path}" + (f";LD_LIBRARY_PATH={libs}" if libs else "")
    lines = [
        "# written by the cfn-chainermn node agent",
        f"btl_tcp_if_include = {s.subnet_cidr}",
        f"oob_tcp_if_include = {s.subnet_cidr}",
        "plm_rsh_no_tree_spawn = 1",
        f"orte_default_hostfile = {s.home_dir()}/hostfile",
        "rtc = ^hwloc",
        *ctx.platform.mpi_params(s),
        f"mca_base_env_list = {env}",
    ]
    return "\n".join(lines) + "\n"


def ssh_step(ctx: Context) -> str:
    detail = ssh.setup(ctx)
    ctx.files().write(".openmpi/mca-params.conf", mca_params(ctx), 0o644)
    ctx.log.info(ctx.platform.sshd_keepalive())
    return detail


def shared_step(ctx: Context) -> str:
    """The shared folder, then its jobs folder in it (the user's, 0700, as submit.sh would make it).

    Made here, after the mount, never before it (a folder made under the mount point would be
    hidden by EFS) and never by a refresh (one made while EFS is not mounted would read as "no
    jobs"): so on a healthy node it exists, and idle shutdown counts a missing one as "cannot
    tell" while the EFS mount is gone (idle_probe.jobs). No link in the user's shared folder is
    followed."""
    detail = ctx.platform.shared_folder(ctx)
    with HomeFiles(ctx.platform.path(ctx.settings.mount_point), ctx.owner).folder(JOBS, mode=0o700):
        pass
    return f"{detail}; jobs folder {ctx.settings.mount_point.rstrip('/')}/{JOBS}"


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
    found = ctx.seen = ctx.inventory.discover()
    text = hostfile.render(found.nodes)
    files = ctx.files()  # the user's home: no-follow writes (homefiles.py); the copies are root's
    files.write("hostfile", text, 0o644)
    files.write(".ssh/known_hosts", ssh.known_hosts(ctx, found.nodes, found.host_keys), 0o644, folder_mode=0o700)
    for path in ctx.platform.hostfile_copies():
        write_atomic(path, text, 0o644)
    members = hostfile.members(found.nodes)
    how = f" ({found.how})" if found.how else ""
    return f"{len(members)} ready nodes, {sum(n.slots for n in members)} slots{how}"


def hostfile_step(ctx: Context) -> str:
    """The cluster files now, and what keeps them true from now on."""
    detail = cluster_files(ctx)
    watchers = [ctx.platform.refresh_timer(ctx), ctx.platform.spot_watch(ctx)]
    return "; ".join([detail, *(w for w in watchers if w)])
