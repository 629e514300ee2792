"""`hostfile`, `ssh` and `cluster check`: looking at a running cluster and logging in to it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from cfn_chainermn.cli.aws_flags import finite_seconds, name_argument
from cfn_chainermn.cli.cluster_access import access_options, remote_for, resolve_cluster

if TYPE_CHECKING:
    from cfn_chainermn.cluster.remote import Remote


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
    from cfn_chainermn.cluster.readiness import plural, wait_ready

    cluster = resolve_cluster(name, access, login=False)
    seen = wait_ready(cluster.list_nodes, wait_for, timeout)
    click.echo(hf.render(seen.nodes), nl=False)
    waiting = seen.waiting
    if waiting:  # on stderr: the hostfile itself stays clean for `> hosts`
        click.echo(f"note: {plural(len(waiting), 'node')} not ready yet, left out ({', '.join(waiting)}); "
                   "`--wait N` waits for N ready nodes", err=True)


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
    cluster = resolve_cluster(name, access)
    remote = remote_for(cluster, access)
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
    """Every node reachable over SSH from the master, with its GPUs and (EFA types) its EFA devices;
    a dead node, or one short of GPUs or EFA devices, is named and fails the check."""
    from cfn_chainermn.cluster import check
    from cfn_chainermn.cluster.readiness import plural
    from cfn_chainermn.errors import RemoteError

    cl = resolve_cluster(name, access)
    nodes = cl.list_nodes()
    with remote_for(cl, access) as remote:
        results = check.check(remote, nodes, cl.network.ssh_port, connect_timeout, cl.ssh_config)
    click.echo(check.table(results), nl=False)
    for line in check.notes(results):
        click.echo(f"note: {line}", err=True)
    bad = check.failures(results)
    if bad:
        raise RemoteError(f"{len(bad)} of {len(results)} nodes failed: " + "; ".join(
            f"{r.node.instance_id} ({r.node.private_ip}) {r.status.lower()}" + (f": {r.detail}" if r.detail else "")
            for r in bad))
    click.echo(f"all {plural(len(results), 'node')} ok" if len(results) > 1 else "the one node is ok")
