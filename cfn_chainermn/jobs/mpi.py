"""A job description to an `mpiexec` command line: pure, so every choice is testable offline.

The settings that matter are the ones the 2018 reference left to luck: the TCP interfaces
OpenMPI may use (pinned to the cluster network, else it wanders onto docker0, link-local or,
locally, the host's public NIC), tree spawn off (workers cannot ssh to each other before
their keys are there), `rtc ^hwloc` (about 3% of launches crash without it), and, when the
"nodes" share cores (a local cluster), no binding and yielding ranks. What NCCL and OpenMPI
use between nodes (EFA or TCP sockets) is fabric.py's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from cfn_chainermn.cluster import hostfile
from cfn_chainermn.errors import ConfigError
from cfn_chainermn.jobs import fabric

LOCAL_INSTANCE_TYPE = "local"
LOOPBACK_CIDR = "127.0.0.0/8"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Job:
    """What to run: `program` (already on the shared mount) with `args`, on `np` ranks."""

    program: str
    np: int
    per_node: int | None = None
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    python: str | None = None  # interpreter for .py programs; None runs the program itself
    hostfile: str | None = None  # None: OpenMPI's default hostfile (orte_default_hostfile)
    workdir: str | None = None
    secret_names: tuple[str, ...] = ()  # forwarded like `env`; mpiexec finds their values in its environment


@dataclass(frozen=True)
class Network:
    """Where the ranks talk: the cluster CIDR, the instance type, the ssh port between nodes, and
    the types of the nodes the job may run on (empty: all are `instance_type`, the master's)."""

    cidr: str
    instance_type: str
    ssh_port: int = 22
    extra_mca: tuple[tuple[str, str], ...] = field(default=())
    node_types: tuple[str, ...] = ()
    efa_attached: bool = True  # False when the stack attaches no EFA interface (Efa off): TCP then

    @property
    def local(self) -> bool:
        return self.instance_type == LOCAL_INSTANCE_TYPE

    @property
    def types(self) -> tuple[str, ...]:
        """Every instance type among the nodes: EFA only when all of them have it (fabric.py)."""
        return tuple(dict.fromkeys(self.node_types or (self.instance_type,)))


def on_nodes(net: Network, nodes: Sequence[hostfile.Node], np: int, per_node: int | None = None) -> Network:
    """`net` for a job of `np` ranks: with the types of the nodes OpenMPI fills, in hostfile order."""
    used = hostfile.members(nodes)[:hostfile.nodes_used(nodes, np, per_node)]
    return replace(net, node_types=tuple(n.instance_type for n in used))


def parse_env(items: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """`K=V` strings from `--env` to pairs; a bad one is a usage error naming the fix."""
    out = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not _ENV_NAME.match(key):
            raise ConfigError(f"--env: {item!r} is not NAME=VALUE (NAME: letters, digits, _)")
        out.append((key, value))
    return tuple(out)


def secret_env(names: Sequence[str], environ: Mapping[str, str],
               env: Sequence[tuple[str, str]] = ()) -> tuple[tuple[str, str], ...]:
    """`--secret-env NAME`s to (NAME, value) pairs, the values from `environ` (this machine's)."""
    out: dict[str, str] = {}
    plain = {key for key, _ in env}
    for name in names:
        if not _ENV_NAME.match(name):
            raise ConfigError(f"--secret-env: {name!r} is not a variable name (letters, digits, _)")
        if name in plain or name in out:
            raise ConfigError(f"--secret-env: {name} is given twice (or also as --env)")
        if name not in environ:
            raise ConfigError(f"--secret-env: {name} is not set here; export it in this shell first")
        out[name] = environ[name]
    return tuple(out.items())


def mca_settings(net: Network) -> dict[str, str]:
    """MCA parameters for this network and instance type, in a stable order."""
    mca = {
        "btl_tcp_if_include": net.cidr,
        "oob_tcp_if_include": net.cidr,
        "plm_rsh_no_tree_spawn": "1",
        "rtc": "^hwloc",
    }
    if net.local:
        # Every "node" shares this machine's cores: binding would pile ranks on core 0 and
        # busy-polling ranks would starve each other.
        mca["hwloc_base_binding_policy"] = "none"
        mca["mpi_yield_when_idle"] = "1"
    if net.ssh_port != 22:
        mca["plm_rsh_args"] = f"-p {net.ssh_port}"
    mca.update(fabric.mpi_mca(net.types, attached=net.efa_attached))
    mca.update(dict(net.extra_mca))
    return mca


def mpiexec_argv(job: Job, net: Network) -> list[str]:
    """The full argv: `[env K=V ...] mpiexec -n NP [-N K] --bind-to none? --mca ... PROGRAM ARGS`.

    The node agent's mca-params.conf sets `mca_base_env_list` (PATH for the ranks), and
    OpenMPI refuses `-x` beside it. So the job's variables are set in mpiexec's own
    environment and forwarded by NAME in a `mca_base_env_list` of the command line (which
    replaces the file's; PATH is forwarded the same way): values never go through its `;`
    list, so any value passes as is. `secret_names` go in that list only: their values are
    already in mpiexec's environment (sh/submit.sh exports them), so they are in no file.
    """
    if job.np < 1:
        raise ConfigError(f"-n: {job.np} ranks; give at least 1")
    if job.per_node is not None and job.per_node < 1:
        raise ConfigError(f"-N: {job.per_node} ranks per node; give at least 1 (or leave it out)")
    argv = ["mpiexec", "-n", str(job.np)]
    if job.per_node is not None:
        argv += ["-N", str(job.per_node)]
    if job.hostfile:
        argv += ["--hostfile", job.hostfile]
    if job.workdir:
        argv += ["--wdir", job.workdir]
    if net.local:
        argv += ["--bind-to", "none"]
    for key, value in mca_settings(net).items():
        argv += ["--mca", key, value]
    defaults = fabric.nccl_env(net.types, attached=net.efa_attached)
    env: dict[str, str] = {key: value for key, value in {**defaults, **dict(job.env)}.items()
                           if key not in job.secret_names}  # a secret overrides a default, as --env does
    if env or job.secret_names:
        names = dict.fromkeys(["PATH", *env, *job.secret_names])
        argv = [*(["env", *(f"{key}={value}" for key, value in env.items())] if env else []), *argv,
                "--mca", "mca_base_env_list", ";".join(names)]
    if job.python and job.program.endswith(".py"):
        argv.append(job.python)
    argv.append(job.program)
    argv += list(job.args)
    return argv
