"""`cfn-chainermn stack ...`: create, update, scale and delete cluster stacks.

The read-only commands (watch, status, outputs, events, list) live in cli/stack_read.py and are
registered on the same group at the end of this module. Each command parses its flags, calls
one operation of stack/operations.py and prints what it returns. Bad input fails before the
first AWS call; preflight runs before the first write; every write that changes an existing
stack goes through a change set that is shown first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from cfn_chainermn.cli.aws_flags import (
    AwsTarget,
    aws_options,
    cluster_name,
    name_argument,
    output_option,
    stack_target,
)
from cfn_chainermn.cli.options import cluster_options, config_from_options
from cfn_chainermn.cli.stack_read import READ_COMMANDS
from cfn_chainermn.cli.stack_view import operations, outcomes, print_outputs
from cfn_chainermn.config.model import MAX_WORKERS, ClusterConfig
from cfn_chainermn.config.sections import IDLE_OFF, MAX_HOURS_WITHOUT_YES
from cfn_chainermn.errors import ConfigError

if TYPE_CHECKING:
    from cfn_chainermn.stack.stack_ids import StackRef


def _change_options(func: Any) -> Any:
    func = click.option("--yes", "-y", is_flag=True, help="Do not ask before changing anything.")(func)
    return click.option("--wait/--no-wait", default=True, show_default=True,
                        help="Follow the stack's events until it settles.")(func)


def _cluster_config(name: str, kwargs: dict[str, Any]) -> ClusterConfig:
    return config_from_options(kwargs, name=name, for_stack=True)


def _check_max_hours(cfg: ClusterConfig, yes: bool) -> None:
    """A limit over a week is more likely a typo than a plan: it needs --yes (before any AWS call)."""
    hours = cfg.idle.max_hours
    if hours != IDLE_OFF and int(hours) > MAX_HOURS_WITHOUT_YES and not yes:
        raise ConfigError(f"idle.max_hours: {hours} hours is over a week ({MAX_HOURS_WITHOUT_YES}); "
                          "give --yes if you mean it, or fewer hours")


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
@click.option("--on-failure", type=click.Choice(["rollback", "delete", "keep"]), default="rollback",
              show_default=True, help="What CloudFormation does when the create fails (keep = leave for debugging).")
@_change_options
@output_option()
def create(name: str, aws_profile: str | None, aws_endpoint_url: str | None, on_failure: str, wait: bool,
           yes: bool, output: str, **kwargs: Any) -> None:
    """Create the cluster stack NAME, follow its events and print its outputs.

    Validates, estimates the cost, runs preflight checks (key pair, instance offerings, vCPU
    quota, network, EFS, AMI), asks, creates (the node agent travels inside the template), and
    streams events.

    \b
    Examples:
      cfn-chainermn stack create demo --key-name K --ssh-cidr 203.0.113.7/32 --workers 3 --instance-type p3.16xlarge
      cfn-chainermn stack create demo --config cluster.yaml --yes --output json > outputs.json
    """
    cfg = _cluster_config(name, kwargs)
    _check_max_hours(cfg, yes)
    with outcomes():
        outcome = operations(AwsTarget(aws_profile, cfg.region or None, aws_endpoint_url)).create(
            cfg, on_failure=on_failure, wait=wait, yes=yes)
    if outcome is not None:
        print_outputs(outcome.stack, output)


@stack.command()
@click.argument("name")
@cluster_options
@aws_options
@_change_options
@output_option()
def update(name: str, aws_profile: str | None, aws_endpoint_url: str | None, wait: bool, yes: bool, output: str,
           **kwargs: Any) -> None:
    """Change stack NAME: the flags and --config given, on top of the stack's current settings.

    Settings not given keep the values the stack has now; the change set is shown before it runs.
    """
    given = config_from_options(dict(kwargs), name=name)  # bad input fails here, before any AWS call
    _check_max_hours(given, yes)

    def configure(base: dict[str, Any]) -> ClusterConfig:  # a setting that depends_on one changed is dropped
        return config_from_options(kwargs, name=name, for_stack=True, base=base)

    with outcomes():
        outcome = operations(AwsTarget(aws_profile, given.region or None, aws_endpoint_url)).update(
            name, configure, wait=wait, yes=yes)
    if outcome is not None:
        print_outputs(outcome.stack, output)


@stack.command()
@name_argument
@click.option("--workers", type=int, required=True, help=f"New number of workers (0 to {MAX_WORKERS}).")
@stack_target
@_change_options
@output_option()
def scale(name: str, workers: int, target: AwsTarget, wait: bool, yes: bool, output: str) -> None:
    """Change the number of workers of stack NAME (everything else stays as it is)."""
    if not 0 <= workers <= MAX_WORKERS:
        raise ConfigError(f"--workers: {workers} is out of range; give 0 to {MAX_WORKERS} (0 = master only)")
    with outcomes():
        outcome = operations(target).scale(name, workers, wait=wait, yes=yes)
    if outcome is not None:
        print_outputs(outcome.stack, output)


def _name_or_stack_id(ctx: click.Context, param: click.Parameter, value: str) -> StackRef:
    """`stack delete`'s NAME: a cluster (stack) name, or a stack's id, as `--no-wait` prints it."""
    from cfn_chainermn.stack.stack_ids import STACK_ID_FORM, is_stack_id, stack_ref

    ref = stack_ref(value if is_stack_id(value) else cluster_name(ctx, param, value))
    if ref is None:
        raise click.BadParameter(f"{value!r} is not a CloudFormation stack id; give it whole, {STACK_ID_FORM}, "
                                 "as `stack delete --no-wait` printed it, or the stack's name", ctx, param)
    return ref


@stack.command()
@click.argument("ref", metavar="NAME", callback=_name_or_stack_id)
@stack_target
@click.option("--role-arn", metavar="ARN",
              help="IAM role CloudFormation deletes as (default: the role last associated with the stack, if any).")
@_change_options
def delete(ref: StackRef, target: AwsTarget, role_arn: str | None, wait: bool, yes: bool) -> None:
    """Delete stack NAME: empty its key bucket (every version), delete, wait, report.

    NAME is the stack's name, or its id (arn:aws:cloudformation:REGION:ACCOUNT:stack/NAME/ID), which
    names that stack alone, deleted or not: of a deleted one, only the role it left is removed.

    Only stacks this tool created (tagged cfn-chainermn:version); only the KeyBucket is emptied.
    Once the stack is gone, the role idle shutdown deletes with (its ShutdownRole, which
    CloudFormation keeps) is deleted too. With --no-wait that is left to a later `stack delete
    STACK_ID`, the id it prints (so never a new stack of the same name); when the master already
    deleted its own stack, to `stack delete NAME`, which finds the role by name and tag. After
    idle shutdown's own deletion the stack keeps deleting as that role; --role-arn names another
    role (trusted by cloudformation.amazonaws.com) when that one cannot finish.
    """
    from dataclasses import replace

    from cfn_chainermn.stack.roles import check_role_arn

    role = check_role_arn(role_arn) if role_arn is not None else None  # before any AWS call
    target = replace(target, region=ref.region_with(target.region))
    with outcomes():
        operations(target).delete(ref.name, wait=wait, yes=yes, role_arn=role, stack_id=ref.stack_id)


for _command in READ_COMMANDS:
    stack.add_command(_command)
