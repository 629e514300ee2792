"""Following a stack operation for a person: events as they come, node logs on a failure, a verdict.

Progress reaches the caller through `Progress` (the CLI prints each line on stderr and asks
on the terminal), so everything here runs the same under a test or another front end. A
failure ends in a StackError that names the first failed resource and the next step, after
the failed node's agent log is shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cfn_chainermn.errors import StackError
from cfn_chainermn.stack import watch

if TYPE_CHECKING:
    from cfn_chainermn.aws import Aws
    from cfn_chainermn.stack.watch import EventStream, Outcome


def _never(question: str) -> bool:
    return False


@dataclass(frozen=True)
class Progress:
    """How an operation talks to its caller: `say` a line of progress, `ask` a yes/no question."""

    say: Callable[[str], None]
    ask: Callable[[str], bool] = _never


class Declined(Exception):
    """The user answered no; nothing was changed (a change set made to be shown is gone again)."""


class WatchStopped(Exception):
    """Ctrl-C while following: the stack carries on, only the watching stopped (said already)."""


_NEXT_STEP = {
    "ROLLBACK_COMPLETE": "nothing is left but the stack record: `cfn-chainermn stack delete {name}`, then create again",
    "ROLLBACK_FAILED": "some resources could not be removed: `cfn-chainermn stack delete {name}`",
    "CREATE_FAILED": "the failed resources were kept (--on-failure keep); `cfn-chainermn stack delete {name}` "
                     "when done looking",
    "DELETE_FAILED": "fix the cause above, then run `cfn-chainermn stack delete {name}` again",
    "UPDATE_ROLLBACK_COMPLETE": "the stack is back to its previous settings and still works",
    "UPDATE_ROLLBACK_FAILED": "the stack is stuck; see the events (`cfn-chainermn stack events {name}`)",
}


def follow_stack(aws: Aws, progress: Progress, name: str, stack_id: str,
                 stream: EventStream | None = None) -> tuple[Outcome, bool]:
    """Stream events until the stack settles; on a node failure show its agent log at once.

    Returns the outcome and whether node logs were shown. Ctrl-C stops watching only (WatchStopped).
    """
    shown: list[str] = []

    def on_event(event: dict[str, Any]) -> None:
        progress.say(watch.format_event(event))
        if watch.is_failure(event) and not shown and "cancelled" not in str(event.get("ResourceStatusReason", "")):
            shown.extend(show_node_logs(aws, progress, name, stack_id, event))

    try:
        outcome = watch.follow(aws.client("cloudformation"), stack_id, on_event, name=name, stream=stream,
                               delay=watch.POLL_SECONDS)
    except KeyboardInterrupt:
        progress.say(f"stopped watching; stack {name} carries on. Resume with: cfn-chainermn stack watch {name}")
        raise WatchStopped(name) from None
    return outcome, bool(shown)


def show_node_logs(aws: Aws, progress: Progress, name: str, stack_id: str, event: dict[str, Any]) -> list[str]:
    """Say the agent log tail of the nodes behind a failure; the instance ids shown."""
    from cfn_chainermn.errors import CfnChainermnError
    from cfn_chainermn.stack.cfn import key_bucket_of
    from cfn_chainermn.stack.diagnose import concerns_nodes, node_logs

    if not concerns_nodes(event):
        return []
    explain_capacity(aws, progress, event)
    try:
        bucket = key_bucket_of(aws.client("cloudformation"), stack_id)
    except CfnChainermnError:
        bucket = None
    logs = node_logs(aws.client("ec2"), aws.client("s3"), bucket, name, event)
    for log in logs:
        progress.say(log.render())
    if not logs:
        progress.say("no agent log found for the failed node (it may not have started; see the EC2 console)")
    return [log.instance_id for log in logs] or ["-"]


def explain_capacity(aws: Aws, progress: Progress, event: dict[str, Any]) -> None:
    """When EC2 had no instances to give, say so and the options. The master's event carries
    RunInstances' error; the worker group's says only that signals did not come, so its last
    failed scaling activity is read for EC2's words (diagnose.scaling_failure)."""
    from cfn_chainermn.names import WORKER_GROUP_RESOURCE
    from cfn_chainermn.stack.diagnose import capacity_advice, scaling_failure

    text = str(event.get("ResourceStatusReason", ""))
    group = str(event.get("PhysicalResourceId", ""))
    if event.get("LogicalResourceId") == WORKER_GROUP_RESOURCE and group:
        activity = scaling_failure(aws.client("autoscaling"), group)
        if activity:
            progress.say(f"the worker group's last failed launch: {activity}")
            text = f"{text} {activity}"
    advice = capacity_advice(text)
    if advice:
        progress.say(advice)


def settle(aws: Aws, progress: Progress, name: str, stack_id: str, outcome: Outcome, want: str,
           logs_shown: bool) -> None:
    """Success says so; anything else raises StackError naming the first failed resource and the next step."""
    if outcome.timed_out:
        raise StackError(f"stack {name} is still {outcome.status} after {watch.MAX_MINUTES:g} minutes; "
                         f"`cfn-chainermn stack watch {name}` keeps watching")
    if outcome.status == want:
        progress.say(f"stack {name}: {outcome.status}")
        return
    failure = outcome.failure
    if failure is not None and not logs_shown:
        show_node_logs(aws, progress, name, stack_id, failure)
    cause = ""
    if failure is not None:
        cause = f"; first failure: {watch.failure_text(failure)}"
    step = _NEXT_STEP.get(outcome.status, "see `cfn-chainermn stack events {name}`").format(name=name)
    raise StackError(f"stack {name} ended {outcome.status}{cause}\nnext: {step}")


def follow_to(aws: Aws, progress: Progress, name: str, stack_id: str, want: str,
              stream: EventStream | None = None) -> Outcome:
    """Follow the stack until it settles and insist on `want` (StackError otherwise)."""
    outcome, logs = follow_stack(aws, progress, name, stack_id, stream)
    settle(aws, progress, name, stack_id, outcome, want, logs)
    return outcome
