"""The steps stack commands share: AWS access, common options, preflight, staging, following a
stack, reporting the result.

Printing goes through `say` (stderr); results (outputs) go to stdout. A failure ends in a
StackError that names the first failed resource, after the failed node's agent log is shown.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import click

from cfn_chainermn.aws import Aws, mapped
from cfn_chainermn.cli.aws_flags import region_from_config
from cfn_chainermn.cli.stack_view import OUTPUT_CHOICE, emit_json, outputs_text, say
from cfn_chainermn.config.model import ClusterConfig
from cfn_chainermn.errors import StackError
from cfn_chainermn.stack.watch import MAX_MINUTES, POLL_SECONDS, Outcome

EXIT_DECLINED = 1
EXIT_INTERRUPTED = 130


def connect(profile: str | None, region: str | None, endpoint_url: str | None) -> Aws:
    """The AWS access of one command (tests replace this to hand in stubbed clients)."""
    from cfn_chainermn.aws import make_session

    return Aws(make_session(profile, region), endpoint_url)


def region_option(func: Any) -> Any:
    """`--region`, and `--config` whose `region:` applies when no --region is given.

    The cluster.yaml a stack was created with then finds it again in later commands.
    """

    @click.option("--region", default=None, help="AWS region (else --config's region, AWS_REGION, the profile's).")
    @click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
                  help="cluster.yaml the stack was created with (its region is used).")
    @functools.wraps(func)
    def wrapper(*args: Any, config_file: str | None = None, region: str | None = None, **kwargs: Any) -> Any:
        return func(*args, region=region or region_from_config(config_file), **kwargs)

    return wrapper


def output_option(func: Any) -> Any:
    return click.option("--output", "output", type=OUTPUT_CHOICE, default="text", show_default=True,
                        help="text for people, json for scripts (on stdout; messages go to stderr).")(func)


def confirm(question: str) -> None:
    """Ask on stderr; no (or no terminal to answer) stops the command with nothing changed."""
    try:
        if click.confirm(question, default=False, err=True):
            return
    except click.Abort:
        pass
    say("nothing was changed (pass --yes to skip this question)")
    raise click.exceptions.Exit(EXIT_DECLINED)


def follow_stack(aws: Aws, name: str, stack_id: str, stream: Any = None) -> tuple[Outcome, bool]:
    """Stream events until the stack settles; on a node failure show its agent log at once.

    Returns the outcome and whether node logs were shown. Ctrl-C stops watching only.
    """
    from cfn_chainermn.stack.watch import follow, format_event, is_failure

    shown: list[str] = []

    def on_event(event: dict[str, Any]) -> None:
        say(format_event(event))
        if is_failure(event) and not shown and "cancelled" not in str(event.get("ResourceStatusReason", "")):
            shown.extend(show_node_logs(aws, name, stack_id, event))

    try:
        outcome = follow(aws.client("cloudformation"), stack_id, on_event, name=name, stream=stream,
                         delay=POLL_SECONDS)
    except KeyboardInterrupt:
        say(f"stopped watching; stack {name} carries on. Resume with: cfn-chainermn stack watch {name}")
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
    return outcome, bool(shown)


def show_node_logs(aws: Aws, name: str, stack_id: str, event: dict[str, Any]) -> list[str]:
    """Print the agent log tail of the nodes behind a failure; the instance ids shown."""
    from cfn_chainermn.errors import CfnChainermnError
    from cfn_chainermn.stack.cfn import key_bucket_of
    from cfn_chainermn.stack.diagnose import concerns_nodes, node_logs

    if not concerns_nodes(event):
        return []
    try:
        bucket = key_bucket_of(aws.client("cloudformation"), stack_id)
    except CfnChainermnError:
        bucket = None
    logs = node_logs(aws.client("ec2"), aws.client("s3"), bucket, name, event)
    for log in logs:
        say(log.render())
    if not logs:
        say("no agent log found for the failed node (it may not have started; see the EC2 console)")
    return [log.instance_id for log in logs] or ["-"]


_NEXT_STEP = {
    "ROLLBACK_COMPLETE": "nothing is left but the stack record: `cfn-chainermn stack delete {name}`, then create again",
    "ROLLBACK_FAILED": "some resources could not be removed: `cfn-chainermn stack delete {name}`",
    "CREATE_FAILED": "the failed resources were kept (--on-failure keep); `cfn-chainermn stack delete {name}` "
                     "when done looking",
    "DELETE_FAILED": "fix the cause above, then run `cfn-chainermn stack delete {name}` again",
    "UPDATE_ROLLBACK_COMPLETE": "the stack is back to its previous settings and still works",
    "UPDATE_ROLLBACK_FAILED": "the stack is stuck; see the events (`cfn-chainermn stack events {name}`)",
}


def report(aws: Aws, name: str, stack_id: str, outcome: Outcome, want: str, logs_shown: bool) -> None:
    """Success says so; anything else raises StackError naming the first failed resource."""
    if outcome.timed_out:
        raise StackError(f"stack {name} is still {outcome.status} after {MAX_MINUTES:g} minutes; "
                         f"`cfn-chainermn stack watch {name}` keeps watching")
    if outcome.status == want:
        say(f"stack {name}: {outcome.status}")
        return
    failure = outcome.failure
    if failure is not None and not logs_shown:
        show_node_logs(aws, name, stack_id, failure)
    cause = ""
    if failure is not None:
        cause = (f"; first failure: {failure.get('LogicalResourceId')} ({failure.get('ResourceType', '')}) "
                 f"{failure.get('ResourceStatus')}: {failure.get('ResourceStatusReason', 'no reason given')}")
    step = _NEXT_STEP.get(outcome.status, "see `cfn-chainermn stack events {name}`").format(name=name)
    raise StackError(f"stack {name} ended {outcome.status}{cause}\nnext: {step}")


def print_outputs(stack: dict[str, Any] | None, output: str) -> None:
    from cfn_chainermn.stack.cfn import outputs_of

    outs = outputs_of(stack or {})
    if output == "json":
        emit_json(outs)
    elif outs:
        click.echo(outputs_text(outs))


def prepare(aws: Aws, cfg: ClusterConfig, current_az: str = "") -> ClusterConfig:
    """Preflight (raises with every problem), then the config with the AZ it settled on."""
    from cfn_chainermn.stack import preflight

    if current_az and not cfg.network.availability_zone and not cfg.network.subnet_id:
        # An update keeps the AZ the stack was created in: a new AZ would replace the subnet.
        cfg = dataclasses.replace(cfg, network=dataclasses.replace(cfg.network, availability_zone=current_az))
    result = preflight.run(aws, cfg)
    for warning in result.warnings:
        say(f"warning: {warning}")
    types = sorted(cfg.instance_types)
    say(f"preflight: ok: key pair {cfg.key_name}; {', '.join(types)} offered in {result.availability_zone}; "
        f"image {result.image_id}")
    if result.availability_zone and not cfg.network.subnet_id:
        cfg = dataclasses.replace(cfg, network=dataclasses.replace(
            cfg.network, availability_zone=result.availability_zone))
    return cfg


def check_quota_for(aws: Aws, name: str, params: dict[str, str], workers: int) -> None:
    """Before growing a stack: the vCPU quota still covers it (PreflightError if not)."""
    from cfn_chainermn.catalog.instance_types import INSTANCE_TYPES
    from cfn_chainermn.errors import PreflightError
    from cfn_chainermn.stack import preflight

    master, worker = params.get("MasterInstanceType", ""), params.get("WorkerInstanceType", "")
    if master not in INSTANCE_TYPES or worker not in INSTANCE_TYPES:
        return
    probe = ClusterConfig(name=name, instance_type=master, worker_instance_type=worker, workers=workers,
                          spot_workers=params.get("SpotWorkers") == "true")
    result = preflight.Result()
    preflight.check_quotas(aws, probe, result)
    for warning in result.warnings:
        say(f"warning: {warning}")
    if result.problems:
        raise PreflightError("\n".join(result.problems))


def template_and_parameters(aws: Aws, cfg: ClusterConfig, agent_source: str,
                             agent_wheel: Path | None) -> tuple[dict[str, str], dict[str, str]]:
    """Stage what needs staging; the template source and the stack parameters."""
    from cfn_chainermn.config.params import template_parameters
    from cfn_chainermn.stack.cfn import compact, template_source
    from cfn_chainermn.stack.staging import Stager
    from cfn_chainermn.template import render

    stager = Stager(aws)
    params = template_parameters(cfg)
    if agent_source == "staged":
        params["AgentWheelS3Path"] = stager.agent_wheel(agent_wheel)
        say(f"agent: staged s3://{params['AgentWheelS3Path']}")
    body = compact(render(cfg, "json"))
    return template_source(body, lambda text: stager.template(cfg.name, text)), params


def apply_change_set(aws: Aws, name: str, stack_id: str, change_set: Any, yes: bool, wait: bool, output: str) -> None:
    """Show a change set, ask, execute it and follow the update."""
    from cfn_chainermn.stack.cfn import discard, execute_change_set
    from cfn_chainermn.stack.watch import EventStream

    if change_set is None:
        say(f"stack {name} already matches; nothing to change")
        return
    say(f"change set {change_set.name}:")
    for line in change_set.changes or ["(no resource changes; parameters only)"]:
        say(f"  {line}")
    cfn = aws.client("cloudformation")
    if not yes:
        try:
            confirm(f"Apply these changes to stack {name}?")
        except click.exceptions.Exit:
            discard(cfn, change_set)
            raise
    stream = EventStream(cfn, stack_id)
    stream.skip_existing()
    execute_change_set(cfn, change_set)
    if not wait:
        say(f"updating; follow it with: cfn-chainermn stack watch {name}")
        return
    outcome, logs = follow_stack(aws, name, stack_id, stream)
    report(aws, name, stack_id, outcome, "UPDATE_COMPLETE", logs)
    print_outputs(outcome.stack, output)


def prune_wheels(aws: Aws) -> None:
    """After a delete: drop staged agent wheels no stack uses (stack/wheel_gc.py); never fails the command."""
    from botocore.exceptions import BotoCoreError

    from cfn_chainermn.errors import CfnChainermnError
    from cfn_chainermn.stack.staging import bucket_name
    from cfn_chainermn.stack.wheel_gc import KEEP_HOURS, prune_agent_wheels

    try:
        account = aws.account_id()
        bucket = bucket_name(account, aws.region)
        with mapped(f"pruning agent wheels in s3://{bucket}"):
            pruned = prune_agent_wheels(aws.client("s3"), aws.client("cloudformation"), bucket, account)
    except (CfnChainermnError, BotoCoreError) as exc:
        say(f"warning: staged agent wheels not pruned: {exc}")
        return
    if pruned.busy:
        say(f"staged agent wheels not pruned: stack {pruned.busy} is changing; the next `stack delete` will")
    elif pruned.removed:
        say(f"removed {pruned.removed} staged agent wheel(s) that no stack uses from s3://{bucket} "
            f"({pruned.kept} kept: in use or staged within {KEEP_HOURS} h)")
