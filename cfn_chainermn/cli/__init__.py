"""The `cfn-chainermn` command: the only place that prints, prompts or picks exit codes.

Each command group lives in its own module and is imported only when used, so `--help`
stays fast; heavy libraries (boto3, paramiko, troposphere) are imported inside commands.
"""

from __future__ import annotations

import gc
import importlib
import sys
from typing import Any

import click

from cfn_chainermn import __version__
from cfn_chainermn.cli.boundary import run_with_boundary, state

# command name -> (module, attribute, short help); modules load on first use.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "template": ("cfn_chainermn.cli.template_cmd", "template", "Write the cluster's CloudFormation template."),
    "stack": ("cfn_chainermn.cli.stack_cmd", "stack", "Create, watch, scale and delete cluster stacks."),
    "hostfile": ("cfn_chainermn.cli.cluster_cmd", "hostfile", "Print the MPI hostfile of a cluster's ready nodes."),
    "job": ("cfn_chainermn.cli.job_cmd", "job", "Run mpiexec jobs on a cluster and follow them."),
    "ssh": ("cfn_chainermn.cli.cluster_cmd", "ssh", "Open a shell or run one command on the master."),
    "cluster": ("cfn_chainermn.cli.cluster_cmd", "cluster", "Check a cluster's nodes over SSH."),
    "local": ("cfn_chainermn.cli.local_cmd", "local", "Run a cluster of sshd nodes on this machine."),
    "ami": ("cfn_chainermn.cli.ami_cmd", "ami", "Render, validate, build and list the cluster AMI."),
    "node": ("cfn_chainermn.cli.node_cmd", "node", "The node agent that runs on every instance."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on demand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module = importlib.import_module(entry[0])
        command: click.Command = getattr(module, entry[1])
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cfn-chainermn")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
def cli(debug: bool) -> None:
    """Provision ChainerMN GPU clusters on AWS with CloudFormation, and run MPI jobs on them.

    \b
    Exit codes: 0 success; 1 error; 2 usage or config error; 3 stack operation failed;
    4 preflight check failed; 5 SSH failure; 130 interrupted. `job submit` returns the
    job's own exit code.
    """
    state.debug = debug or state.debug


def _leading_debug(args: list[str]) -> bool:
    """`--debug` among the options before the command word; a job's own `--debug` is not ours."""
    for arg in args:
        if arg == "--debug":
            return True
        if arg == "--" or not arg.startswith("-"):
            return False
    return False


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry point."""
    args = sys.argv[1:] if argv is None else argv
    state.debug = _leading_debug(args)
    rc = run_with_boundary(cli, args)
    # Shutdown would otherwise walk every object of paramiko, boto3 and click for cycles: ~25 ms
    # of each command (a tenth of a small job's launch). Files are closed by then; std streams
    # are still flushed.
    gc.freeze()
    sys.exit(rc)
