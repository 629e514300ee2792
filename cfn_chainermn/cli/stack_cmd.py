"""`cfn-chainermn stack ...`: create, update, scale and delete cluster stacks.

The read-only commands (watch, status, outputs, events, list) live in cli/stack_read.py and are
registered on the same group at the end of this module. Each command is a few lines over
stack.py, watch.py, preflight.py and staging.py. Bad input fails before the first AWS call;
preflight runs before the first write; every write that changes an existing stack goes
through a change set that is shown first.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import click

from cfn_chainermn import __version__
from cfn_chainermn.cli import stack_flow
from cfn_chainermn.cli.aws_flags import aws_options
from cfn_chainermn.cli.options import cluster_options, config_from_options
from cfn_chainermn.cli.stack_flow import (
    apply_change_set,
    check_quota_for,
    confirm,
    follow_stack,
    output_option,
    prepare,
    print_outputs,
    region_option,
    report,
    template_and_parameters,
)
from cfn_chainermn.cli.stack_read import READ_COMMANDS
from cfn_chainermn.cli.stack_view import say
from cfn_chainermn.config.model import MAX_WORKERS, ClusterConfig
from cfn_chainermn.errors import ConfigError, StackError
from cfn_chainermn.stack.staging import AGENT_SOURCES, check_agent_options


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
@output_option
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
    from cfn_chainermn.catalog.instance_types import estimate
    from cfn_chainermn.stack.cfn import create as create_stack
    from cfn_chainermn.stack.cfn import ensure_absent, stack_tags

    cfg = _cluster_config(name, agent_source, agent_wheel, kwargs)
    say(f"cost: {estimate(cfg.instance_type, cfg.worker_type, cfg.workers).describe()}")
    aws = stack_flow.connect(aws_profile, cfg.region or None, aws_endpoint_url)
    ensure_absent(aws.client("cloudformation"), name)  # before preflight, staging or the question
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
@output_option
def update(name: str, aws_profile: str | None, aws_endpoint_url: str | None, agent_source: str,
           agent_wheel: Path | None, wait: bool, yes: bool, output: str, **kwargs: Any) -> None:
    """Change stack NAME: the flags and --config given, on top of the stack's current settings.

    Settings not given keep the values the stack has now; the change set is shown before it runs.
    """
    from cfn_chainermn.config.params import config_overrides
    from cfn_chainermn.stack.cfn import create_change_set, describe_own, parameters_of, stack_tags, tags_of

    given = config_from_options(dict(kwargs), name=name)  # bad input fails here, before any AWS call
    check_agent_options(agent_source, agent_wheel)
    aws = stack_flow.connect(aws_profile, given.region or None, aws_endpoint_url)
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
@region_option
@aws_options
@_change_options
@output_option
def scale(name: str, workers: int, region: str | None, aws_profile: str | None, aws_endpoint_url: str | None,
          wait: bool, yes: bool, output: str) -> None:
    """Change the number of workers of stack NAME (everything else stays as it is)."""
    from cfn_chainermn.catalog.instance_types import estimate
    from cfn_chainermn.stack.cfn import create_change_set, describe_own, parameters_of

    if not 0 <= workers <= MAX_WORKERS:
        raise ConfigError(f"--workers: {workers} is out of range; give 0 to {MAX_WORKERS} (0 = master only)")
    aws = stack_flow.connect(aws_profile, region, aws_endpoint_url)
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
@region_option
@aws_options
@_change_options
def delete(name: str, region: str | None, aws_profile: str | None, aws_endpoint_url: str | None,
           wait: bool, yes: bool) -> None:
    """Delete stack NAME: empty its key bucket (every version), delete, wait, report.

    Only stacks this tool created (tagged cfn-chainermn:version); only the KeyBucket is emptied.
    Then agent wheels that no stack of the region uses leave the staging bucket.
    """
    from cfn_chainermn.stack.cfn import KEY_BUCKET_RESOURCE, describe_own, empty_bucket, key_bucket_of
    from cfn_chainermn.stack.cfn import delete as delete_stack
    from cfn_chainermn.stack.watch import EventStream

    aws = stack_flow.connect(aws_profile, region, aws_endpoint_url)
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
        stack_flow.prune_wheels(aws)
        return


for _command in READ_COMMANDS:
    stack.add_command(_command)
