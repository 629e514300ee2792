"""`cfn-chainermn stack` commands that only read: watch, status, outputs, events, list.

Kept apart from the commands that change stacks (cli/stack_cmd.py registers these on the same
`stack` group), so each module stays small; none of them needs the stack's tag to run.
"""

from __future__ import annotations

from typing import Any

import click

from cfn_chainermn.aws import Aws
from cfn_chainermn.cli import stack_flow
from cfn_chainermn.cli.aws_flags import aws_options
from cfn_chainermn.cli.stack_flow import follow_stack, output_option, print_outputs, region_option, report
from cfn_chainermn.cli.stack_view import (
    emit_json,
    event_json,
    list_rows,
    list_text,
    node_json,
    nodes_text,
    outputs_text,
    say,
    stack_json,
    status_text,
)


@click.command()
@click.argument("name")
@region_option
@aws_options
@output_option
def watch(name: str, region: str | None, aws_profile: str | None, aws_endpoint_url: str | None,
          output: str) -> None:
    """Follow stack NAME's current operation until it settles, then print its outputs.

    Ctrl-C stops watching, not the stack. Exit 0 when the operation ended well, 3 otherwise.
    """
    from cfn_chainermn.stack.cfn import describe, simplify

    aws = stack_flow.connect(aws_profile, region, aws_endpoint_url)
    stack_id = describe(aws.client("cloudformation"), name)["StackId"]
    outcome, logs = follow_stack(aws, name, stack_id)
    want = outcome.status if simplify(outcome.status) in ("complete", "deleted") else "success"
    report(aws, name, stack_id, outcome, want, logs)
    if outcome.stack is not None:
        print_outputs(outcome.stack, output)


@click.command()
@click.argument("name")
@region_option
@aws_options
@output_option
def status(name: str, region: str | None, aws_profile: str | None, aws_endpoint_url: str | None,
           output: str) -> None:
    """Show stack NAME's state, size and outputs."""
    from cfn_chainermn.aws import mapped
    from cfn_chainermn.stack.cfn import describe

    aws = stack_flow.connect(aws_profile, region, aws_endpoint_url)
    with mapped(f"reading stack {name}"):
        current = describe(aws.client("cloudformation"), name)
    nodes = _nodes(aws, name, current)
    if output == "json":
        emit_json({**stack_json(current), "nodes": None if nodes is None else [node_json(n) for n in nodes]})
    else:
        click.echo(status_text(current))
        if nodes is not None:
            click.echo("\n" + nodes_text(nodes))


def _nodes(aws: Aws, name: str, current: dict[str, Any]) -> list[Any] | None:
    """The stack's live instances and readiness (None when the stack has no key bucket yet)."""
    from cfn_chainermn.cluster.inventory import list_nodes
    from cfn_chainermn.errors import AwsError
    from cfn_chainermn.names import OUT_BUCKET
    from cfn_chainermn.stack.cfn import outputs_of

    bucket = outputs_of(current).get(OUT_BUCKET)
    if not bucket:
        return None
    try:
        return list_nodes(aws.client("ec2"), aws.client("s3"), name, bucket)
    except AwsError as exc:
        say(f"warning: could not list the nodes: {exc}")
        return None


@click.command()
@click.argument("name")
@region_option
@aws_options
@output_option
def outputs(name: str, region: str | None, aws_profile: str | None, aws_endpoint_url: str | None,
            output: str) -> None:
    """Print stack NAME's outputs (ClusterMasterPublicDNS first)."""
    from cfn_chainermn.stack.cfn import outputs as stack_outputs

    aws = stack_flow.connect(aws_profile, region, aws_endpoint_url)
    values = stack_outputs(aws.client("cloudformation"), name)
    if output == "json":
        emit_json(values)
    elif values:
        click.echo(outputs_text(values))
    else:
        say(f"stack {name} has no outputs yet")


@click.command()
@click.argument("name")
@region_option
@aws_options
@output_option
def events(name: str, region: str | None, aws_profile: str | None, aws_endpoint_url: str | None,
           output: str) -> None:
    """Print the events of stack NAME's latest operation, oldest first."""
    from cfn_chainermn.aws import mapped
    from cfn_chainermn.stack.cfn import describe
    from cfn_chainermn.stack.watch import EventStream, format_event

    aws = stack_flow.connect(aws_profile, region, aws_endpoint_url)
    cfn = aws.client("cloudformation")
    with mapped(f"reading the events of stack {name}"):
        found = EventStream(cfn, describe(cfn, name)["StackId"]).poll()
    if output == "json":
        emit_json([event_json(e) for e in found])
    else:
        for event in found:
            click.echo(format_event(event))


@click.command(name="list")
@region_option
@aws_options
@output_option
def list_cmd(region: str | None, aws_profile: str | None, aws_endpoint_url: str | None, output: str) -> None:
    """List this tool's stacks in the region (those tagged cfn-chainermn:version)."""
    from cfn_chainermn.stack.cfn import list_stacks

    aws = stack_flow.connect(aws_profile, region, aws_endpoint_url)
    rows = list_rows(list_stacks(aws.client("cloudformation")))
    if output == "json":
        emit_json(rows)
    else:
        click.echo(list_text(rows))


# Registered on the `stack` group by cli/stack_cmd.py.
READ_COMMANDS = [watch, status, outputs, events, list_cmd]
