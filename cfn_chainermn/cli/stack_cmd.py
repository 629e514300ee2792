"""`cfn-chainermn stack ...`: create, watch, scale, update and delete cluster stacks.

Each command is a few lines over stack.py, watch.py, preflight.py and staging.py. Bad input
fails before the first AWS call; preflight runs before the first write; every write that
changes an existing stack goes through a change set that is shown first.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import click

from cfn_chainermn import __version__
from cfn_chainermn.aws import Aws
from cfn_chainermn.cli.options import aws_options, cluster_options, config_from_options
from cfn_chainermn.cli.stack_flow import (
    apply_change_set,
    check_quota_for,
    confirm,
    follow_stack,
    prepare,
    print_outputs,
    report,
    template_and_parameters,
)
from cfn_chainermn.cli.stack_view import (
    OUTPUT_CHOICE,
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
from cfn_chainermn.config import MAX_WORKERS, ClusterConfig
from cfn_chainermn.errors import ConfigError, StackError
from cfn_chainermn.staging import AGENT_SOURCES, check_agent_options


def connect(profile: str | None, region: str | None, endpoint_url: str | None) -> Aws:
    """The AWS access of one command (tests replace this to hand in stubbed clients)."""
    from cfn_chainermn.aws import make_session

    return Aws(make_session(profile, region), endpoint_url)


def _region_option(func: Any) -> Any:
    return click.option("--region", default=None, help="AWS region (else AWS_REGION / the profile's region).")(func)


def _output_option(func: Any) -> Any:
    return click.option("--output", "output", type=OUTPUT_CHOICE, default="text", show_default=True,
                        help="text for people, json for scripts (on stdout; messages go to stderr).")(func)


def _change_options(func: Any) -> Any:
    func = click.option("--yes", "-y", is_flag=True, help="Do not ask before changing anything.")(func)
    return click.option("--wait/--no-wait", default=True, show_default=True,
                        help="Follow the stack's events until it settles.")(func)


def _agent_options(func: Any) -> Any:
    func = click.option("--agent-wheel", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                        default=None,
                        help=f"Agent wheel to stage: cfn_chainermn-{__version__}-py3-none-any.whl "
                             "(default: built from this checkout, afresh each time).")(func)
    return click.option("--agent-source", type=click.Choice(AGENT_SOURCES), default="staged", show_default=True,
                        help="Where nodes get the agent: this package staged in S3, AgentPackage from a "
                             "package index, or already on the AMI.")(func)


def _cluster_config(name: str, agent_source: str, agent_wheel: Path | None, kwargs: dict[str, Any]) -> ClusterConfig:
    cfg = config_from_options(kwargs, name=name, for_stack=True)
    check_agent_options(agent_source, agent_wheel)
    return cfg


@click.group()
def stack() -> None:
    """Create, watch, scale, update and delete cluster stacks.

    \b
    Examples:
      cfn-chainermn stack create demo --key-name K --workers 3 --instance-type p3.16xlarge --ssh-cidr 203.0.113.7/32
      cfn-chainermn stack outputs demo
      cfn-chainermn stack scale demo --workers 7
      cfn-chainermn stack delete demo
    """


@stack.command()
@click.argument("name")
@cluster_options
@aws_options
@_agent_options
@click.option("--on-failure", type=click.Choice(["rollback", "delete", "keep"]), default="rollback",
              show_default=True, help="What CloudFormation does when the create fails (keep = leave for debugging).")
@_change_options
@_output_option
def create(name: str, aws_profile: str | None, aws_endpoint_url: str | None, agent_source: str,
           agent_wheel: Path | None, on_failure: str, wait: bool, yes: bool, output: str, **kwargs: Any) -> None:
    """Create the cluster stack NAME, follow its events and print its outputs.

    Validates, estimates the cost, runs preflight checks (key pair, instance offerings, vCPU
    quota, network, EFS, AMI), asks, stages the node agent, creates, and streams events.

    \b
    Examples:
      cfn-chainermn stack create demo --key-name K --ssh-cidr 203.0.113.7/32 --workers 3 --instance-type p3.16xlarge
      cfn-chainermn stack create demo --config cluster.yaml --yes --output json > outputs.json
    """
    from cfn_chainermn.instances import estimate
    from cfn_chainermn.stack import create as create_stack
    from cfn_chainermn.stack import stack_tags

    cfg = _cluster_config(name, agent_source, agent_wheel, kwargs)
    say(f"cost: {estimate(cfg.instance_type, cfg.worker_type, cfg.workers).describe()}")
    aws = connect(aws_profile, cfg.region or None, aws_endpoint_url)
    cfg = prepare(aws, cfg)
    if not yes:
        confirm(f"Create stack {name} in {aws.region}?")
    source, params = template_and_parameters(aws, cfg, agent_source, agent_wheel)
    stack_id = create_stack(aws.client("cloudformation"), name, source, params, stack_tags(cfg.tags),
                            on_failure=on_failure)
    say(f"creating stack {name} ({stack_id})")
    if not wait:
        say(f"follow it with: cfn-chainermn stack watch {name}")
        return
    outcome, logs = follow_stack(aws, name, stack_id)
    report(aws, name, stack_id, outcome, "CREATE_COMPLETE", logs)
    print_outputs(outcome.stack, output)


@stack.command()
@click.argument("name")
@cluster_options
@aws_options
@_agent_options
@_change_options
@_output_option
def update(name: str, aws_profile: str | None, aws_endpoint_url: str | None, agent_source: str,
           agent_wheel: Path | None, wait: bool, yes: bool, output: str, **kwargs: Any) -> None:
    """Change stack NAME: the flags and --config given, on top of the stack's current settings.

    Settings not given keep the values the stack has now; the change set is shown before it runs.
    """
    from cfn_chainermn.params import config_overrides
    from cfn_chainermn.stack import create_change_set, describe_own, parameters_of, stack_tags, tags_of

    given = config_from_options(dict(kwargs), name=name)  # bad input fails here, before any AWS call
    check_agent_options(agent_source, agent_wheel)
    aws = connect(aws_profile, given.region or None, aws_endpoint_url)
    current = describe_own(aws.client("cloudformation"), name, "update")
    base: dict[str, Any] = config_overrides(parameters_of(current))
    base["tags"] = {k: v for k, v in tags_of(current).items() if not k.startswith(("aws:", "cfn-chainermn:"))}
    cfg = config_from_options(kwargs, name=name, for_stack=True, base=base)
    cfg = prepare(aws, cfg, parameters_of(current).get("AvailabilityZone", ""))
    source, params = template_and_parameters(aws, cfg, agent_source, agent_wheel)
    change_set = create_change_set(aws.client("cloudformation"), name, source, dict(params), stack_tags(cfg.tags))
    apply_change_set(aws, name, current["StackId"], change_set, yes, wait, output)


@stack.command()
@click.argument("name")
@click.option("--workers", type=int, required=True, help=f"New number of workers (0 to {MAX_WORKERS}).")
@_region_option
@aws_options
@_change_options
@_output_option
def scale(name: str, workers: int, region: str | None, aws_profile: str | None, aws_endpoint_url: str | None,
          wait: bool, yes: bool, output: str) -> None:
    """Change the number of workers of stack NAME (everything else stays as it is)."""
    from cfn_chainermn.instances import estimate
    from cfn_chainermn.stack import create_change_set, describe_own, parameters_of

    if not 0 <= workers <= MAX_WORKERS:
        raise ConfigError(f"--workers: {workers} is out of range; give 0 to {MAX_WORKERS} (0 = master only)")
    aws = connect(aws_profile, region, aws_endpoint_url)
    current = describe_own(aws.client("cloudformation"), name, "scale")
    params = parameters_of(current)
    if "WorkerCount" not in params:
        raise StackError(f"stack {name} has no WorkerCount parameter; it is not a cfn-chainermn cluster")
    if params["WorkerCount"] == str(workers):
        say(f"stack {name} already has {workers} workers; nothing to change")
        return
    with contextlib.suppress(KeyError):
        say(f"cost: {estimate(params['MasterInstanceType'], params['WorkerInstanceType'], workers).describe()}")
    if workers > int(params["WorkerCount"] or 0):
        check_quota_for(aws, name, params, workers)
    values: dict[str, str | None] = {key: None for key in params}
    values["WorkerCount"] = str(workers)
    change_set = create_change_set(aws.client("cloudformation"), name, None, values)
    apply_change_set(aws, name, current["StackId"], change_set, yes, wait, output)


@stack.command()
@click.argument("name")
@_region_option
@aws_options
@_change_options
def delete(name: str, region: str | None, aws_profile: str | None, aws_endpoint_url: str | None,
           wait: bool, yes: bool) -> None:
    """Delete stack NAME: empty its key bucket (every version), delete, wait, report.

    Only stacks this tool created (tagged cfn-chainermn:version); only the KeyBucket is emptied.
    """
    from cfn_chainermn.stack import KEY_BUCKET_RESOURCE, describe_own, empty_bucket, key_bucket_of
    from cfn_chainermn.stack import delete as delete_stack
    from cfn_chainermn.watch import EventStream

    aws = connect(aws_profile, region, aws_endpoint_url)
    cfn, s3 = aws.client("cloudformation"), aws.client("s3")
    stack_id = describe_own(cfn, name, "delete")["StackId"]
    if not yes:
        confirm(f"Delete stack {name} and every resource in it, the cluster's data included?")
    for attempt in (1, 2):
        bucket = key_bucket_of(cfn, stack_id)
        if bucket is not None:
            say(f"emptied bucket {bucket}: {empty_bucket(s3, bucket)} object versions removed")
        stream = EventStream(cfn, stack_id)
        stream.skip_existing()
        delete_stack(cfn, stack_id)
        say(f"deleting stack {name}")
        if not wait:
            say(f"follow it with: cfn-chainermn stack watch {name}")
            return
        outcome, logs = follow_stack(aws, name, stack_id, stream)
        failure = outcome.failure
        if (attempt == 1 and outcome.status == "DELETE_FAILED" and failure is not None
                and failure.get("LogicalResourceId") == KEY_BUCKET_RESOURCE):
            say("a node wrote to the bucket after it was emptied; emptying it again and retrying the delete")
            continue
        report(aws, name, stack_id, outcome, "DELETE_COMPLETE", logs)
        return


@stack.command()
@click.argument("name")
@_region_option
@aws_options
@_output_option
def watch(name: str, region: str | None, aws_profile: str | None, aws_endpoint_url: str | None,
          output: str) -> None:
    """Follow stack NAME's current operation until it settles, then print its outputs.

    Ctrl-C stops watching, not the stack. Exit 0 when the operation ended well, 3 otherwise.
    """
    from cfn_chainermn.stack import describe, simplify

    aws = connect(aws_profile, region, aws_endpoint_url)
    stack_id = describe(aws.client("cloudformation"), name)["StackId"]
    outcome, logs = follow_stack(aws, name, stack_id)
    want = outcome.status if simplify(outcome.status) in ("complete", "deleted") else "success"
    report(aws, name, stack_id, outcome, want, logs)
    if outcome.stack is not None:
        print_outputs(outcome.stack, output)


@stack.command()
@click.argument("name")
@_region_option
@aws_options
@_output_option
def status(name: str, region: str | None, aws_profile: str | None, aws_endpoint_url: str | None,
           output: str) -> None:
    """Show stack NAME's state, size and outputs."""
    from cfn_chainermn.aws import mapped
    from cfn_chainermn.stack import describe

    aws = connect(aws_profile, region, aws_endpoint_url)
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
    from cfn_chainermn.errors import AwsError
    from cfn_chainermn.inventory import list_nodes
    from cfn_chainermn.params import OUT_BUCKET
    from cfn_chainermn.stack import outputs_of

    bucket = outputs_of(current).get(OUT_BUCKET)
    if not bucket:
        return None
    try:
        return list_nodes(aws.client("ec2"), aws.client("s3"), name, bucket)
    except AwsError as exc:
        say(f"warning: could not list the nodes: {exc}")
        return None


@stack.command()
@click.argument("name")
@_region_option
@aws_options
@_output_option
def outputs(name: str, region: str | None, aws_profile: str | None, aws_endpoint_url: str | None,
            output: str) -> None:
    """Print stack NAME's outputs (ClusterMasterPublicDNS first)."""
    from cfn_chainermn.stack import outputs as stack_outputs

    aws = connect(aws_profile, region, aws_endpoint_url)
    values = stack_outputs(aws.client("cloudformation"), name)
    if output == "json":
        emit_json(values)
    elif values:
        click.echo(outputs_text(values))
    else:
        say(f"stack {name} has no outputs yet")


@stack.command()
@click.argument("name")
@_region_option
@aws_options
@_output_option
def events(name: str, region: str | None, aws_profile: str | None, aws_endpoint_url: str | None,
           output: str) -> None:
    """Print the events of stack NAME's latest operation, oldest first."""
    from cfn_chainermn.aws import mapped
    from cfn_chainermn.stack import describe
    from cfn_chainermn.watch import EventStream, format_event

    aws = connect(aws_profile, region, aws_endpoint_url)
    cfn = aws.client("cloudformation")
    with mapped(f"reading the events of stack {name}"):
        found = EventStream(cfn, describe(cfn, name)["StackId"]).poll()
    if output == "json":
        emit_json([event_json(e) for e in found])
    else:
        for event in found:
            click.echo(format_event(event))


@stack.command(name="list")
@_region_option
@aws_options
@_output_option
def list_cmd(region: str | None, aws_profile: str | None, aws_endpoint_url: str | None, output: str) -> None:
    """List this tool's stacks in the region (those tagged cfn-chainermn:version)."""
    from cfn_chainermn.stack import list_stacks

    aws = connect(aws_profile, region, aws_endpoint_url)
    rows = list_rows(list_stacks(aws.client("cloudformation")))
    if output == "json":
        emit_json(rows)
    else:
        click.echo(list_text(rows))
