"""`local up` / `local down`: a cluster of sshd nodes on 127.0.0.x running the real node agent."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cfn_chainermn.cli.aws_flags import cluster_name

_STATE_HELP = ("State folder of the cluster (default .local-cluster; as root, where other users cannot reach "
               "the current folder, /var/lib/cfn-chainermn/<hash>/local-cluster; CFN_CHAINERMN_STATE_DIR).")


def _python_default() -> str:
    return sys.executable


@click.group()
def local() -> None:
    """Run a cluster of sshd nodes on this machine (127.0.0.2, .3, ...)."""


@local.command()
@click.option("--workers", type=click.IntRange(0, 250), default=2, show_default=True,
              help="Workers besides the master.")
@click.option("--slots", type=click.IntRange(1, 64), default=1, show_default=True, help="MPI slots per node.")
@click.option("--state-dir", envvar="CFN_CHAINERMN_STATE_DIR", default=None,
              type=click.Path(file_okay=False), help=_STATE_HELP)
@click.option("--python", "python", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Interpreter the jobs use (default: this one, e.g. .venv/bin/python).")
@click.option("--name", default="local", show_default=True, callback=cluster_name, help="The NAME job commands use.")
def up(workers: int, slots: int, state_dir: str | None, python: str | None, name: str) -> None:
    """Start the master and WORKERS workers, each its own sshd, and run the node agent on each.

    \b
    Example: cfn-chainermn local up --workers 2
             cfn-chainermn job submit local -n 3 -N 1 examples/train_mnist.py -- --dataset digits
    """
    import os
    import time

    from cfn_chainermn.local import lifecycle as lc
    from cfn_chainermn.local import places

    started = time.monotonic()
    folder = Path(state_dir) if state_dir else places.default_state_dir(create=True)
    spec = lc.Spec(state_dir=folder, workers=workers,
                   python=os.path.abspath(python) if python else _python_default(), slots=slots, name=name)
    state = lc.up(spec, log=lambda m: click.echo(m, err=True))
    click.echo(f"local cluster {name!r} up: {workers + 1} nodes, master {state.master_ip}:{state.port}, "
               f"user {state.user}, shared folder {state.shared} ({time.monotonic() - started:.1f}s)")


@local.command()
@click.option("--state-dir", envvar="CFN_CHAINERMN_STATE_DIR", default=None,
              type=click.Path(file_okay=False), help=_STATE_HELP)
@click.option("--all", "all_", is_flag=True, help="Every local cluster running on this machine.")
def down(state_dir: str | None, all_: bool) -> None:
    """Stop the cluster: every sshd, job and rank; remove the user `local up` created."""
    from cfn_chainermn.local import lifecycle as lc
    from cfn_chainermn.local import places

    def log(m: str) -> None:
        click.echo(m, err=True)

    if all_:
        done = lc.down_all(log=log)
        click.echo(f"stopped {len(done)} local clusters" + "".join(f"\n  {d}" for d in done))
        return
    folder = Path(state_dir) if state_dir else places.default_state_dir()
    if lc.down(folder, log=log):
        click.echo(f"local cluster in {folder.resolve()} is down")
    else:
        click.echo(f"no local cluster in {folder.resolve()}")
