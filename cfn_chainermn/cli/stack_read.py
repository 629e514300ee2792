"""`cfn-chainermn stack` commands that only read: watch, status, outputs, events, list.

Kept apart from the commands that change stacks (cli/stack_cmd.py registers these on the same
`stack` group), so each module stays small; none of them needs the stack's tag to run. Each
calls one operation of stack/operations.py and prints what it returns.
"""

from __future__ import annotations

import time

import click

from cfn_chainermn.cli.aws_flags import AwsTarget, name_argument, output_option, stack_target
from cfn_chainermn.cli.idle_view import idle_text
from cfn_chainermn.cli.stack_view import (
    emit_json,
    event_json,
    list_rows,
    list_text,
    node_json,
    nodes_text,
    operations,
    outcomes,
    outputs_text,
    print_outputs,
    say,
    stack_json,
    status_text,
)


@click.command()
@name_argument
@stack_target
@output_option()
def watch(name: str, target: AwsTarget, output: str) -> None:
    """Follow stack NAME's current operation until it settles, then print its outputs.

    Ctrl-C stops watching, not the stack. Exit 0 when the operation ended well, 3 otherwise.
    """
    with outcomes():
        outcome = operations(target).watch(name)
    if outcome.stack is not None:
        print_outputs(outcome.stack, output)


@click.command()
@name_argument
@stack_target
@output_option()
def status(name: str, target: AwsTarget, output: str) -> None:
    """Show stack NAME's state, size and outputs."""
    ops = operations(target)
    current, nodes = ops.status(name)
    idle = ops.idle(current)
    if output == "json":
        emit_json({**stack_json(current), "nodes": None if nodes is None else [node_json(n) for n in nodes],
                   "idle": idle})
    else:
        click.echo(status_text(current))
        idle_line = idle_text(stack_json(current)["parameters"], idle, time.time())
        if idle_line:
            click.echo(idle_line)
        if nodes is not None:
            click.echo("\n" + nodes_text(nodes))


@click.command()
@name_argument
@stack_target
@output_option()
def outputs(name: str, target: AwsTarget, output: str) -> None:
    """Print stack NAME's outputs (ClusterMasterPublicDNS first)."""
    values = operations(target).outputs(name)
    if output == "json":
        emit_json(values)
    elif values:
        click.echo(outputs_text(values))
    else:
        say(f"stack {name} has no outputs yet")


@click.command()
@name_argument
@stack_target
@output_option()
def events(name: str, target: AwsTarget, output: str) -> None:
    """Print the events of stack NAME's latest operation, oldest first."""
    from cfn_chainermn.stack.watch import format_event

    found = operations(target).events(name)
    if output == "json":
        emit_json([event_json(e) for e in found])
    else:
        for event in found:
            click.echo(format_event(event))


@click.command(name="list")
@stack_target
@output_option()
def list_cmd(target: AwsTarget, output: str) -> None:
    """List this tool's stacks in the region (those tagged cfn-chainermn:version)."""
    rows = list_rows(operations(target).stacks())
    if output == "json":
        emit_json(rows)
    else:
        click.echo(list_text(rows))


# Registered on the `stack` group by cli/stack_cmd.py.
READ_COMMANDS = [watch, status, outputs, events, list_cmd]
