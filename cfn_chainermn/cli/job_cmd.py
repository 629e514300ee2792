"""`job submit|logs|list|cancel`: mpiexec jobs on a running cluster, streamed or detached.

Every job lives in a folder on the shared mount (jobs/folder.py); the commands only parse, call
one operation (jobs/submit.py, jobs/runner.py) and print.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cfn_chainermn.cli.aws_flags import name_argument
from cfn_chainermn.cli.cluster_access import access_options, echo_line, remote_for, resolve_cluster


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
@click.option("--detach", is_flag=True, help="Start it (or queue it) and return; its log stays on the shared mount.")
@click.option("--no-wait", "no_wait", is_flag=True,
              help="Fail at once (exit 75) when the nodes it needs are held by other jobs, instead of queueing.")
@click.option("--python", "python", default=None, help="Interpreter for .py scripts (default: the cluster's).")
@click.argument("script", type=click.Path(exists=True, dir_okay=False))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@access_options
def submit(name: str, np: int, per_node: int | None, env: tuple[str, ...], secret_env: tuple[str, ...],
           files: tuple[str, ...], detach: bool, no_wait: bool, python: str | None, script: str,
           args: tuple[str, ...], access: dict[str, Any]) -> int:
    """Upload SCRIPT to the shared mount and run it with mpiexec on NAME; returns the job's exit code.

    \b
    Example: cfn-chainermn job submit demo -n 32 -N 8 examples/train_mnist.py -- -g
    Ctrl-C cancels the job on the cluster (no rank is left behind). A job gets whole nodes no
    other job holds; it waits for them in a queue on the master, first come first served.
    """
    import functools
    import os

    from cfn_chainermn.jobs.submit import Request
    from cfn_chainermn.jobs.submit import submit as run

    request = Request(script=Path(script), np=np, per_node=per_node, args=args, env=env, secret_env=secret_env,
                      files=[Path(f) for f in files], python=python, detach=detach, wait=not no_wait)
    say = functools.partial(click.echo, err=True)
    done = run(request, resolve=lambda: resolve_cluster(name, access), connect=lambda c: remote_for(c, access),
               environ=os.environ, on_line=echo_line, on_started=say, on_note=say)
    if detach:
        click.echo(done.job_id)
        return 0
    click.echo(f"job {done.job_id} exited {done.exit_code}", err=True)
    return done.exit_code


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
    cluster = resolve_cluster(name, access)
    with remote_for(cluster, access) as remote:
        ref = job_folder.JobRef(job_id, job_folder.job_dir(cluster.shared, job_id))
        rc = jobs.logs(remote, ref, follow=follow, on_line=echo_line)
    return rc if follow else 0


@job.command(name="list")
@name_argument
@access_options
def list_(name: str, access: dict[str, Any]) -> None:
    """List NAME's jobs: id, state, exit code, what ran."""
    from cfn_chainermn.jobs import runner as jobs

    cluster = resolve_cluster(name, access)
    with remote_for(cluster, access) as remote:
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
    cluster = resolve_cluster(name, access)
    with remote_for(cluster, access) as remote:
        stopped = jobs.cancel(remote, job_folder.JobRef(job_id, job_folder.job_dir(cluster.shared, job_id)))
    click.echo(f"job {job_id} cancelled" if stopped else f"job {job_id} had ended already; nothing was stopped")
