"""Follow a stack operation: stream its events live, wait for it to settle, find the root cause.

The waiting is botocore's own waiter machinery (one waiter model whose success states are all
the settled statuses, so create, update, delete and `stack watch` share it). Events are
streamed by a hook on the waiter's DescribeStacks calls: each poll of the stack also pages
describe_stack_events back to the first event already shown, so there is no sleep loop here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cfn_chainermn.aws import aws_error, botocore_errors

if TYPE_CHECKING:
    from mypy_boto3_cloudformation import CloudFormationClient


# Statuses at which an operation has finished, well or badly.
SETTLED = (
    "CREATE_COMPLETE", "CREATE_FAILED", "ROLLBACK_COMPLETE", "ROLLBACK_FAILED",
    "DELETE_COMPLETE", "DELETE_FAILED", "UPDATE_COMPLETE", "UPDATE_FAILED",
    "UPDATE_ROLLBACK_COMPLETE", "UPDATE_ROLLBACK_FAILED",
    "IMPORT_COMPLETE", "IMPORT_ROLLBACK_COMPLETE", "IMPORT_ROLLBACK_FAILED",
)
# A stack-level event with one of these statuses starts an operation: `watch` shows from there.
_STARTS = ("CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS", "DELETE_IN_PROGRESS", "IMPORT_IN_PROGRESS")
POLL_SECONDS = 5.0
MAX_MINUTES = 120

_WAITER_MODEL = {
    "version": 2,
    "waiters": {
        "StackSettled": {
            "operation": "DescribeStacks",
            "delay": POLL_SECONDS,
            "maxAttempts": 1,
            "acceptors": [
                *({"matcher": "pathAll", "argument": "Stacks[].StackStatus", "expected": s, "state": "success"}
                  for s in SETTLED),
                # The stack is gone (a delete finished and the name no longer resolves).
                {"matcher": "error", "expected": "ValidationError", "state": "success"},
            ],
        }
    },
}


def is_stack_event(event: dict[str, Any]) -> bool:
    return event.get("ResourceType") == "AWS::CloudFormation::Stack" and (
        event.get("PhysicalResourceId") == event.get("StackId")
        or event.get("LogicalResourceId") == event.get("StackName"))


def is_failure(event: dict[str, Any]) -> bool:
    return str(event.get("ResourceStatus", "")).endswith("_FAILED")


class EventStream:
    """New events of one stack, oldest first, each returned once."""

    def __init__(self, cfn: CloudFormationClient, stack_id: str) -> None:
        self.cfn = cfn
        self.stack_id = stack_id
        self.seen: set[str] = set()

    def _newest_first(self) -> Any:
        for page in self.cfn.get_paginator("describe_stack_events").paginate(StackName=self.stack_id):
            yield from page.get("StackEvents", [])

    def skip_existing(self) -> None:
        """Mark what already happened as shown (before an update or delete starts)."""
        for event in self._newest_first():
            self.seen.add(event["EventId"])
            break  # paging stops at the first seen event, so the newest one is enough

    def poll(self) -> list[dict[str, Any]]:
        """Events since the last poll; the first poll goes back to the current operation's start."""
        new: list[dict[str, Any]] = []
        for event in self._newest_first():
            if event["EventId"] in self.seen:
                break
            new.append(event)
            if is_stack_event(event) and event.get("ResourceStatus") in _STARTS:
                break
        self.seen.update(e["EventId"] for e in new)
        return list(reversed(new))


def format_event(event: dict[str, Any]) -> str:
    """One line: time, resource, status, reason."""
    when = event["Timestamp"].strftime("%H:%M:%S")
    reason = str(event.get("ResourceStatusReason", "") or "")
    line = f"{when}  {event.get('LogicalResourceId', ''):<22} {event.get('ResourceStatus', ''):<30} {reason}"
    return line.rstrip()


def root_cause(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first failed resource: later failures are mostly "Resource creation cancelled" echoes."""
    failed = [e for e in events if is_failure(e)]
    resources = [e for e in failed if not is_stack_event(e)]
    first_cause = [e for e in resources if "cancelled" not in str(e.get("ResourceStatusReason", ""))]
    for candidates in (first_cause, resources, failed):
        if candidates:
            return candidates[0]
    return None


def failure_text(event: dict[str, Any]) -> str:
    """A failed resource in words: "KeyBucket (AWS::S3::Bucket) DELETE_FAILED: its reason"."""
    return (f"{event.get('LogicalResourceId')} ({event.get('ResourceType', '')}) "
            f"{event.get('ResourceStatus')}: {event.get('ResourceStatusReason', 'no reason given')}")


@dataclass
class Outcome:
    """How an operation ended: the final stack (None when deleted and gone) and its events."""

    status: str
    stack: dict[str, Any] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    timed_out: bool = False

    @property
    def failure(self) -> dict[str, Any] | None:
        return root_cause(self.events)


def follow(cfn: CloudFormationClient, stack_id: str, on_event: Callable[[dict[str, Any]], None], *, name: str = "",
           stream: EventStream | None = None, delay: float = POLL_SECONDS,
           max_minutes: float = MAX_MINUTES) -> Outcome:
    """Wait until the stack settles, handing each new event to `on_event` as it appears.

    The stack is polled by `name` (when given) and its events by `stack_id`: once a delete
    finishes the name stops resolving, which ends the wait, while the id still reads the last
    events. (Polling a deleted stack by id would also work on AWS, but moto re-creates the
    resources its outputs refer to when it describes a deleted stack.)
    """
    from botocore.exceptions import WaiterError
    from botocore.waiter import WaiterModel, create_waiter_with_client

    stream = stream or EventStream(cfn, stack_id)
    outcome = Outcome(status="")

    def on_describe(parsed: dict[str, Any], **_: Any) -> None:
        stacks = parsed.get("Stacks")
        if "Error" in parsed or not stacks:
            return
        outcome.stack = stacks[0]
        outcome.status = str(stacks[0]["StackStatus"])
        for event in stream.poll():
            outcome.events.append(event)
            on_event(event)

    waiter = create_waiter_with_client("StackSettled", WaiterModel(_WAITER_MODEL), cfn)
    attempts = max(1, int(max_minutes * 60 / delay)) if delay > 0 else 1_000_000
    event_name = "after-call.cloudformation.DescribeStacks"
    cfn.meta.events.register(event_name, on_describe, unique_id="cfn-chainermn-watch")
    try:
        waiter.wait(StackName=name or stack_id, WaiterConfig={"Delay": delay, "MaxAttempts": attempts})
    except WaiterError as exc:
        if "Max attempts exceeded" not in str(exc):
            raise aws_error(_ErrorView(dict(exc.last_response or {})), f"watching stack {stack_id}") from exc
        outcome.timed_out = True
    finally:
        cfn.meta.events.unregister(event_name, unique_id="cfn-chainermn-watch")
    if not outcome.timed_out and outcome.status not in SETTLED:
        # Success without a settled status: the ValidationError acceptor matched, the stack is gone.
        outcome.status, outcome.stack = "DELETE_COMPLETE", None
        _last_events(stream, outcome, on_event)
    return outcome


def _last_events(stream: EventStream, outcome: Outcome, on_event: Callable[[dict[str, Any]], None]) -> None:
    """The events written after the last poll of a stack that is now gone (best effort)."""
    try:
        new = stream.poll()
    except botocore_errors():
        return
    for event in new:
        outcome.events.append(event)
        on_event(event)


class _ErrorView(Exception):
    """Carries a waiter's last error response so aws_error (failure_of, the one reading) can read it."""

    def __init__(self, response: dict[str, Any]) -> None:
        self.response = response
        super().__init__("the waiter stopped on an answer without an error in it")
