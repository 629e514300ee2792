"""`hostfile`, `job submit|logs|list|cancel`, `ssh` and `cluster check`: working with a running cluster.

NAME is a local cluster (its state folder holds a cluster of that name) or an AWS stack.
Every SSH connection verifies the master's host key against what its node agent published.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from cfn_chainermn.cli.aws_flags import (
    access_from_config,
    aws_options,
    config_option,
    finite_seconds,
    name_argument,
    region_option,
)

if TYPE_CHECKING:
    from cfn_chainermn.cluster.handle import Cluster
    from cfn_chainermn.cluster.remote import Remote

F = TypeVar("F", bound=Callable[..., Any])


def access_options(func: F) -> F:
    """How to find and log in to cluster NAME; the command gets `access` (a dict) in kwargs."""

    @click.option("--state-dir", envvar="CFN_CHAINERMN_STATE_DIR", type=click.Path(file_okay=False),
                  help="Folder of a local cluster (default .local-cluster; CFN_CHAINERMN_STATE_DIR).")
    @click.option("-i", "--identity-file", envvar="CFN_CHAINERMN_IDENTITY_FILE", type=click.Path(dir_okay=False),
                  help="Private key of the stack's EC2 key pair (CFN_CHAINERMN_IDENTITY_FILE; else --config's).")
    @click.option("--accept-new-host-key", is_flag=True,
                  help="Trust whatever host key the master shows now (it is printed). Off by default.")
    @region_option("AWS region of the stack (else --config's).", dest="aws_region")
    @config_option("cluster.yaml the stack was created with (its region and identity_file are used).")
    @aws_options
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        config_file = kwargs.pop("config_file", None)
        kwargs["access"] = {k: kwargs.pop(k) for k in ("state_dir", "identity_file", "accept_new_host_key",
                                                        "aws_region", "aws_profile", "aws_endpoint_url")}
        region, identity = access_from_config(config_file)
        access = kwargs["access"]
        access["aws_region"] = access["aws_region"] or region
        access["identity_file"] = access["identity_file"] or identity
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _resolve(name: str, access: dict[str, Any], *, login: bool = True) -> Cluster:
    """NAME's handle through the command's Services (tests hand in their own resolver)."""
    from cfn_chainermn.cli.services import services
    from cfn_chainermn.cluster.handle import AwsAccess

    return services().resolve(name, state_dir=access["state_dir"], access=AwsAccess(
        profile=access["aws_profile"], region=access["aws_region"], endpoint_url=access["aws_endpoint_url"],
        identity_file=access["identity_file"]), login=login)


def _remote(cluster: Cluster, access: dict[str, Any]) -> Remote:
    if cluster.host_key_source.startswith("the EC2 console"):
        click.echo(f"note: the master's host key is checked against {cluster.host_key_source} "
                   "(its node agent has published none)", err=True)
    return cluster.remote(accept_new_host_key=bool(access["accept_new_host_key"]),
                          notice=lambda m: click.echo(f"warning: {m}", err=True))


def _echo(line: str) -> None:
    click.echo(line)


def _n(count: int, noun: str) -> str:
    """`1 node`, `3 nodes`."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


@click.command()
@name_argument
@click.option("--wait", "wait_for", type=click.IntRange(min=1), default=None, metavar="N",
              help="Block until N nodes are ready (a barrier before mpiexec).")
@click.option("--timeout", type=click.FloatRange(min=0), default=600.0, show_default=True,
              callback=finite_seconds,
              help="Seconds --wait may take.")
@access_options
def hostfile(name: str, wait_for: int | None, timeout: float, access: dict[str, Any]) -> None:
    """Print the hostfile of NAME's ready nodes (`ip slots=N`, master first)."""
    from cfn_chainermn.cluster import hostfile as hf
    from cfn_chainermn.cluster.readiness import wait_ready

    cluster = _resolve(name, access, login=False)
    seen = wait_ready(cluster.list_nodes, wait_for, timeout)
    click.echo(hf.render(seen.nodes), nl=False)
    waiting = seen.waiting
    if waiting:  # on stderr: the hostfile itself stays clean for `> hosts`
        click.echo(f"note: {_n(len(waiting), 'node')} not ready yet, left out ({', '.join(waiting)}); "
                   "`--wait N` waits for N ready nodes", err=True)


@click.group()
def job() -> None:
    """Run mpiexec jobs on a cluster and follow them."""


@job.command(context_settings={"ignore_unknown_options": True})
@name_argument
@click.option("-n", "np", type=click.IntRange(min=1), required=True, help="Number of ranks (processes).")
@click.option("-N", "per_node", type=click.IntRange(min=1), default=None, help="Ranks per node (e.g. GPUs per node).")
@click.option("--env", "env", multiple=True, metavar="K=V", help="Environment for every rank (repeatable).")
@click.option("--secret-env", "secret_env", multiple=True, metavar="NAME",
              help="Variable NAME of this shell's environment for every rank, its value sent over SSH and "
                   "written nowhere (repeatable).")
@click.option("--files", "files", multiple=True, type=click.Path(exists=True),
              help="Extra file or folder to upload next to the script (repeatable; a folder keeps its "
                   "layout, without hidden entries and __pycache__).")
@click.option("--detach", is_flag=True, help="Start it and return; its log stays on the shared mount.")
@click.option("--python", "python", default=None, help="Interpreter for .py scripts (default: the cluster's).")
@click.argument("script", type=click.Path(exists=True, dir_okay=False))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@access_options
def submit(name: str, np: int, per_node: int | None, env: tuple[str, ...], secret_env: tuple[str, ...],
           files: tuple[str, ...], detach: bool, python: str | None, script: str, args: tuple[str, ...],
           access: dict[str, Any]) -> int:
    """Upload SCRIPT to the shared mount and run it with mpiexec on NAME; returns the job's exit code.

    \b
    Example: cfn-chainermn job submit demo -n 32 -N 8 examples/train_mnist.py -- -g
    Ctrl-C cancels the job on the cluster (no rank is left behind).
    """
    import os

    from cfn_chainermn.cluster import hostfile as hf
    from cfn_chainermn.errors import CfnChainermnError, ConfigError
    from cfn_chainermn.jobs import folder as job_folder
    from cfn_chainermn.jobs import mpi
    from cfn_chainermn.jobs import runner as jobs

    job_env = mpi.parse_env(env)
    secrets = mpi.secret_env(secret_env, os.environ, job_env)
    cluster = _resolve(name, access)
    nodes = cluster.list_nodes()
    text = hf.render(nodes)
    if not text:
        raise CfnChainermnError(f"no ready node in {name}; `cfn-chainermn hostfile {name} --wait 1` waits for one")
    problem = hf.placement_problem(nodes, np, per_node)
    if problem:
        raise ConfigError(problem.replace("NAME", name))
    spec = mpi.Job(program=Path(script).name, np=np, per_node=per_node, args=args, env=job_env,
                   python=python or cluster.python)
    launch = job_folder.prepare(shared=cluster.shared, script=Path(script), files=[Path(f) for f in files],
                                hostfile_text=text, job=spec, net=cluster.network, secrets=secrets)
    ref = launch.ref
    started = (f"job {ref.job_id}: {_n(np, 'rank')} on {_n(hf.nodes_used(nodes, np, per_node), 'node')}; "
               f"log {ref.directory}/log")
    with _remote(cluster, access) as remote:
        kept: list[str] = []
        rc = jobs.start(remote, launch, detach=detach, on_line=jobs.tee(_echo, kept),
                        on_started=lambda: click.echo(started, err=True))
        if detach:
            click.echo(ref.job_id)
            return 0
        if rc != 0 and jobs.looks_like_launch_failure(kept):
            _explain_launch_failure(remote, cluster, ref.job_id)
    click.echo(f"job {ref.job_id} exited {rc}", err=True)
    return rc


def _explain_launch_failure(remote: Remote, cluster: Cluster, job_id: str) -> None:
    from cfn_chainermn.cluster import check
    from cfn_chainermn.errors import RemoteError

    bad = check.failures(check.check(remote, cluster.list_nodes(), cluster.network.ssh_port,
                                         ssh_config=cluster.ssh_config))
    if bad:
        names = "; ".join(f"{r.node.instance_id} ({r.node.private_ip}) {r.status.lower()}: {r.detail}" for r in bad)
        raise RemoteError(f"job {job_id} could not start its ranks: {names}; "
                          f"`cfn-chainermn cluster check {cluster.name}` shows every node")


@job.command()
@name_argument
@click.argument("job_id", metavar="JOB")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the job ends; exit with its code.")
@access_options
def logs(name: str, job_id: str, follow: bool, access: dict[str, Any]) -> int:
    """Print the log of job JOB on NAME."""
    from cfn_chainermn.jobs import folder as job_folder
    from cfn_chainermn.jobs import runner as jobs

    job_folder.job_dir("", job_id)  # a bad id is a usage error before any connection
    cluster = _resolve(name, access)
    with _remote(cluster, access) as remote:
        ref = job_folder.JobRef(job_id, job_folder.job_dir(cluster.shared, job_id))
        rc = jobs.logs(remote, ref, follow=follow, on_line=_echo)
    return rc if follow else 0


@job.command(name="list")
@name_argument
@access_options
def list_(name: str, access: dict[str, Any]) -> None:
    """List NAME's jobs: id, state, exit code, what ran."""
    from cfn_chainermn.jobs import runner as jobs

    cluster = _resolve(name, access)
    with _remote(cluster, access) as remote:
        found = jobs.list_jobs(remote, cluster.shared)
    rows = [("JOB", "STATE", "EXIT", "COMMAND")] + [  # one row each, whatever the arguments hold
        (jobs.one_line(j.job_id), j.state, "-" if j.exit_code is None else str(j.exit_code), jobs.one_line(j.summary))
        for j in found]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=False)) + "  " + r[3])


@job.command()
@name_argument
@click.argument("job_id", metavar="JOB")
@access_options
def cancel(name: str, job_id: str, access: dict[str, Any]) -> None:
    """Stop job JOB on NAME and every rank it started (a job that has ended already is left alone)."""
    from cfn_chainermn.jobs import folder as job_folder
    from cfn_chainermn.jobs import runner as jobs

    job_folder.job_dir("", job_id)
    cluster = _resolve(name, access)
    with _remote(cluster, access) as remote:
        stopped = jobs.cancel(remote, job_folder.JobRef(job_id, job_folder.job_dir(cluster.shared, job_id)))
    click.echo(f"job {job_id} cancelled" if stopped else f"job {job_id} had ended already; nothing was stopped")


@click.command(context_settings={"ignore_unknown_options": True})
@name_argument
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("-n", "no_stdin", is_flag=True,
              help="Give COMMAND no stdin, as `ssh -n` (say in a `while read` loop over a file).")
@access_options
def ssh(name: str, command: tuple[str, ...], no_stdin: bool, access: dict[str, Any]) -> int:
    """A shell on NAME's master as the cluster user, or run COMMAND there (after `--`): COMMAND
    gets this terminal's stdin (unless -n) and gives back its stdout, stderr and exit code."""
    import shlex
    import sys

    if no_stdin and not command:  # before any AWS call
        raise click.UsageError("-n needs a COMMAND (after --): a shell without stdin could do nothing")
    cluster = _resolve(name, access)
    remote = _remote(cluster, access)
    if command:
        with remote:
            line = shlex.join(command) if len(command) > 1 else command[0]
            return remote.relay(line, sys.stdout.buffer, sys.stderr.buffer, None if no_stdin else sys.stdin.buffer)
    return _interactive(remote)


def _interactive(remote: Remote) -> int:
    """The system ssh with a known_hosts file holding only the verified key."""
    import os
    import subprocess
    import tempfile

    from cfn_chainermn.cluster.remote import host_entry

    with remote:  # verifies the host key (or accepts and reports a new one) first
        client = remote.connect()
        shown = client.get_transport().get_remote_server_key()  # type: ignore[union-attr]
        line = f"{host_entry(remote.host, remote.port)} {shown.get_name()} {shown.get_base64()}\n"
    with tempfile.NamedTemporaryFile("w", prefix="cfnmn-known-", delete=False) as fh:
        fh.write(line)
    try:
        return subprocess.call(["ssh", "-i", str(remote.key_file), "-p", str(remote.port), "-o", "IdentitiesOnly=yes",
                                "-o", f"UserKnownHostsFile={fh.name}", "-o", "StrictHostKeyChecking=yes",
                                f"{remote.user}@{remote.host}"])
    finally:
        os.unlink(fh.name)


@click.group()
def cluster() -> None:
    """Check a cluster's nodes over SSH."""


@cluster.command(name="check")
@name_argument
@click.option("--connect-timeout", type=click.IntRange(1, 60), default=5, show_default=True,
              help="Seconds each node may take to answer SSH.")
@access_options
def check_cmd(name: str, connect_timeout: int, access: dict[str, Any]) -> None:
    """Every node reachable over SSH from the master, with its GPUs; a dead node is named in seconds."""
    from cfn_chainermn.cluster import check
    from cfn_chainermn.errors import RemoteError

    cl = _resolve(name, access)
    nodes = cl.list_nodes()
    with _remote(cl, access) as remote:
        results = check.check(remote, nodes, cl.network.ssh_port, connect_timeout, cl.ssh_config)
    click.echo(check.table(results), nl=False)
    bad = check.failures(results)
    if bad:
        raise RemoteError(f"{len(bad)} of {len(results)} nodes failed: " + "; ".join(
            f"{r.node.instance_id} ({r.node.private_ip}) {r.status.lower()}" + (f": {r.detail}" if r.detail else "")
            for r in bad))
    click.echo(f"all {_n(len(results), 'node')} ok" if len(results) > 1 else "the one node is ok")
