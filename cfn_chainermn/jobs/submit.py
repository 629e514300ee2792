"""`job submit` as one operation: check the request against the cluster, write the job folder,
start mpiexec on the master, and explain a launch that failed on a node.

The CLI parses and prints; everything between (which nodes are ready, whether -n/-N fit their
slots, the job folder, the exit code) happens here, reported through callbacks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cfn_chainermn.cluster import hostfile as hf
from cfn_chainermn.cluster.readiness import plural
from cfn_chainermn.errors import CfnChainermnError, ConfigError, RemoteError
from cfn_chainermn.jobs import folder, mpi, runner

if TYPE_CHECKING:
    from cfn_chainermn.cluster.channel_io import LineSink
    from cfn_chainermn.cluster.handle import Cluster
    from cfn_chainermn.cluster.remote import Remote


@dataclass(frozen=True)
class Request:
    """What `job submit` was asked for, as given on the command line."""

    script: Path
    np: int
    per_node: int | None = None
    args: Sequence[str] = ()
    env: Sequence[str] = ()  # K=V
    secret_env: Sequence[str] = ()  # names, read from `environ`
    files: Sequence[Path] = ()
    python: str | None = None
    detach: bool = False
    wait: bool = True  # False (--no-wait): BusyError when the job's nodes are not free at once


@dataclass(frozen=True)
class Submitted:
    job_id: str
    exit_code: int  # 0 for a detached job: it was started


def submit(request: Request, *, resolve: Callable[[], Cluster], connect: Callable[[Cluster], Remote],
           environ: Mapping[str, str], on_line: LineSink, on_started: Callable[[str], None],
           on_note: Callable[[str], None] | None = None) -> Submitted:
    """Run the job on the cluster `resolve` finds, once the request itself is known to be sound
    (a bad --env is a usage error before any lookup); `on_started` gets one line naming the job
    (ranks, nodes, log) once it is on the master, `on_note` the queue's news while it waits there
    for its nodes (jobs/sh/queue.sh)."""
    r = request
    job_env = mpi.parse_env(r.env)
    secrets = mpi.secret_env(r.secret_env, environ, job_env)
    cluster = resolve()
    nodes = cluster.list_nodes()
    text = hf.render(nodes)
    if not text:
        raise CfnChainermnError(f"no ready node in {cluster.name}; "
                                f"`cfn-chainermn hostfile {cluster.name} --wait 1` waits for one")
    problem = hf.placement_problem(nodes, r.np, r.per_node)
    if problem:
        raise ConfigError(problem.replace("NAME", cluster.name))
    spec = mpi.Job(program=r.script.name, np=r.np, per_node=r.per_node, args=tuple(r.args), env=job_env,
                   python=r.python or cluster.python)
    launch = folder.prepare(shared=cluster.shared, script=r.script, files=list(r.files), hostfile_text=text,
                            job=spec, net=mpi.on_nodes(cluster.network, nodes, r.np, r.per_node),
                            secrets=secrets)
    ref = launch.ref
    started = (f"job {ref.job_id}: {plural(r.np, 'rank')} on "
               f"{plural(hf.nodes_used(nodes, r.np, r.per_node), 'node')}; log {ref.directory}/log")
    with connect(cluster) as remote:
        kept: list[str] = []
        rc = runner.start(remote, launch, detach=r.detach, on_line=runner.tee(on_line, kept),
                          on_started=lambda: on_started(started), wait=r.wait, on_note=on_note)
        if r.detach:
            return Submitted(ref.job_id, 0)
        if rc != 0 and runner.looks_like_launch_failure(kept):
            _explain_launch_failure(remote, cluster, ref.job_id)
    return Submitted(ref.job_id, rc)


def _explain_launch_failure(remote: Remote, cluster: Cluster, job_id: str) -> None:
    """mpiexec could not start ranks: name the nodes that fail the cluster check, if any."""
    from cfn_chainermn.cluster import check

    bad = check.failures(check.check(remote, cluster.list_nodes(), cluster.network.ssh_port,
                                     ssh_config=cluster.ssh_config))
    if bad:
        names = "; ".join(f"{b.node.instance_id} ({b.node.private_ip}) {b.status.lower()}: {b.detail}" for b in bad)
        raise RemoteError(f"job {job_id} could not start its ranks: {names}; "
                          f"`cfn-chainermn cluster check {cluster.name}` shows every node")
