"""What the stack commands do, below the CLI: create, update, scale, delete and watch a stack.

Each operation connects (lazily: a command may say something before the first AWS call),
checks before it writes, asks before it changes anything unless told not to, follows the stack
until it settles, and tells its caller how it goes through `Progress`. The CLI only parses,
calls one of these and prints what comes back. An operation that followed the stack returns
its Outcome (the final stack's outputs are the command's result); None when it did not wait or
there was nothing to do.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cfn_chainermn.errors import StackError
from cfn_chainermn.names import OUT_SHUTDOWN_ROLE
from cfn_chainermn.stack.follow import Declined, Progress, follow_stack, follow_to, settle

if TYPE_CHECKING:
    from cfn_chainermn.aws import Aws
    from cfn_chainermn.cluster.hostfile import Node
    from cfn_chainermn.config.model import ClusterConfig
    from cfn_chainermn.stack.cfn import ChangeSet
    from cfn_chainermn.stack.watch import Outcome

# Settings an update inherits from the stack: its parameters, and the tags the user gave it.
_SYSTEM_TAG_PREFIXES = ("aws:", "cfn-chainermn:")


class StackOps:
    """The operations on one account and region, connected on first use."""

    def __init__(self, connect: Callable[[], Aws], progress: Progress) -> None:
        self._connect = connect
        self.progress = progress

    @functools.cached_property
    def aws(self) -> Aws:
        return self._connect()

    def say(self, line: str) -> None:
        self.progress.say(line)

    def _confirm(self, question: str) -> None:
        if not self.progress.ask(question):
            raise Declined(question)

    def create(self, cfg: ClusterConfig, *, on_failure: str, wait: bool, yes: bool) -> Outcome | None:
        """Cost, name check, preflight, the question, staging, CreateStack, then follow it."""
        from cfn_chainermn.catalog.instance_types import estimate
        from cfn_chainermn.stack.cfn import create as create_stack
        from cfn_chainermn.stack.cfn import ensure_absent, stack_tags
        from cfn_chainermn.stack.provision import prepare, template_and_parameters

        name = cfg.name
        self.say(f"cost: {estimate(cfg.instance_type, cfg.worker_type, cfg.workers).describe()}")
        aws = self.aws
        ensure_absent(aws.client("cloudformation"), name)  # before preflight, staging or the question
        cfg = prepare(aws, self.progress, cfg)
        if not yes:
            self._confirm(f"Create stack {name} in {aws.region}?")
        source, params = template_and_parameters(aws, cfg)
        stack_id = create_stack(aws.client("cloudformation"), name, source, params, stack_tags(cfg.tags),
                                on_failure=on_failure)
        self.say(f"creating stack {name} ({stack_id})")
        if not wait:
            self.say(f"follow it with: cfn-chainermn stack watch {name}")
            return None
        return follow_to(aws, self.progress, name, stack_id, "CREATE_COMPLETE")

    def update(self, name: str, configure: Callable[[dict[str, Any]], ClusterConfig], *, wait: bool,
               yes: bool) -> Outcome | None:
        """`configure(base)` gives the new config over the stack's current settings; shown as a change set."""
        from cfn_chainermn.config.params import config_overrides
        from cfn_chainermn.stack.cfn import create_change_set as change_set_of
        from cfn_chainermn.stack.cfn import describe_own, outputs_of, parameters_of, stack_tags, tags_of
        from cfn_chainermn.stack.provision import prepare, template_and_parameters
        from cfn_chainermn.stack.roles import delete_role_commands, deletes_when_idle, remove_retained_role, role_name

        aws = self.aws
        current = describe_own(aws.client("cloudformation"), name, "update")
        retained = outputs_of(current).get(OUT_SHUTDOWN_ROLE, "")
        base: dict[str, Any] = config_overrides(parameters_of(current))
        base["tags"] = {k: v for k, v in tags_of(current).items() if not k.startswith(_SYSTEM_TAG_PREFIXES)}
        cfg = prepare(aws, self.progress, configure(base), parameters_of(current).get("AvailabilityZone", ""))
        source, params = template_and_parameters(aws, cfg)
        change_set = change_set_of(aws.client("cloudformation"), name, source, dict(params), stack_tags(cfg.tags))
        outcome = self._apply(name, current["StackId"], change_set, yes=yes, wait=wait)
        if retained and outcome is not None and outputs_of(outcome.stack or {}).get(OUT_SHUTDOWN_ROLE) != retained:
            remove_retained_role(aws.client("iam"), retained, self.say)  # dropped or replaced: kept (Retain)
        elif retained and change_set is not None and not wait and not deletes_when_idle(params):
            self.say(f"note: the update drops the idle shutdown's role {role_name(retained)}, which CloudFormation "
                     f"keeps; once it is done: {delete_role_commands(retained)}")
        return outcome

    def scale(self, name: str, workers: int, *, wait: bool, yes: bool) -> Outcome | None:
        """Only WorkerCount changes; the vCPU quota is checked before growing. A cluster idle shutdown
        stopped (outside CloudFormation) is started again: its master, and its group to N (stack/resume.py)."""
        from cfn_chainermn.catalog.instance_types import estimate
        from cfn_chainermn.stack.cfn import create_change_set, describe_own, outputs_of, parameters_of
        from cfn_chainermn.stack.provision import check_quota_for
        from cfn_chainermn.stack.resume import Stopped, find_stopped, resume

        aws = self.aws
        current = describe_own(aws.client("cloudformation"), name, "scale")
        params = parameters_of(current)
        if "WorkerCount" not in params:
            raise StackError(f"stack {name} has no WorkerCount parameter; it is not a cfn-chainermn cluster")
        same = params["WorkerCount"] == str(workers)
        stopped = find_stopped(aws.client("ec2"), aws.client("autoscaling"), outputs_of(current), workers)
        if same and not stopped:
            self.say(f"stack {name} already has {workers} workers; nothing to change")
            return None
        with contextlib.suppress(KeyError):
            cost = estimate(params["MasterInstanceType"], params["WorkerInstanceType"], workers)
            self.say(f"cost: {cost.describe()}")
        if workers > int(params["WorkerCount"] or 0) or stopped:
            check_quota_for(aws, self.progress, name, params, workers)
        if same:  # the stack already says N: nothing for CloudFormation to change, the resources differ
            if not yes:
                self._confirm(f"Stack {name} is stopped: {stopped.describe(workers)}?")
            for line in resume(aws.client("ec2"), aws.client("autoscaling"), stopped, workers):
                self.say(line)
            return None
        values: dict[str, str | None] = {key: None for key in params}
        values["WorkerCount"] = str(workers)
        change_set = create_change_set(aws.client("cloudformation"), name, None, values)
        outcome = self._apply(name, current["StackId"], change_set, yes=yes, wait=wait)
        for line in resume(aws.client("ec2"), aws.client("autoscaling"), Stopped(master=stopped.master), workers):
            self.say(line)  # the change set sized the group; the master idle shutdown stopped needs a start
        return outcome

    def _apply(self, name: str, stack_id: str, change_set: ChangeSet | None, *, yes: bool,
               wait: bool) -> Outcome | None:
        """Show a change set, ask (a no discards it), execute it and follow the update."""
        from cfn_chainermn.stack.cfn import discard, execute_change_set
        from cfn_chainermn.stack.watch import EventStream

        if change_set is None:
            self.say(f"stack {name} already matches; nothing to change")
            return None
        self.say(f"change set {change_set.name}:")
        for line in change_set.changes or ["(no resource changes; parameters only)"]:
            self.say(f"  {line}")
        cfn = self.aws.client("cloudformation")
        if not yes:
            try:
                self._confirm(f"Apply these changes to stack {name}?")
            except Declined:
                discard(cfn, change_set)
                raise
        stream = EventStream(cfn, stack_id)
        stream.skip_existing()
        execute_change_set(cfn, change_set)
        if not wait:
            self.say(f"updating; follow it with: cfn-chainermn stack watch {name}")
            return None
        return follow_to(self.aws, self.progress, name, stack_id, "UPDATE_COMPLETE", stream)

    def delete(self, name: str, *, wait: bool, yes: bool, role_arn: str | None = None,
               stack_id: str | None = None) -> None:
        """Empty the key bucket, delete (as `role_arn` when given), follow; once more if a node wrote to
        the bucket meanwhile. A failure names the role CloudFormation deleted as (stack/roles.py).
        Given `stack_id` (stack/stack_ids.py), that stack only: a deleted one leaves its role to remove."""
        from cfn_chainermn.stack import cfn as stacks
        from cfn_chainermn.stack import roles
        from cfn_chainermn.stack.watch import EventStream

        aws = self.aws
        cfn, s3 = aws.client("cloudformation"), aws.client("s3")
        try:
            own = stacks.describe(cfn, stack_id or name)
        except stacks.StackNotFound:  # by name: the master's deletion may have left its role
            if stack_id or not roles.delete_left_roles(aws.client("iam"), cfn, name, self.say, self._confirm, yes=yes):
                raise
            return
        if own["StackStatus"] == "DELETE_COMPLETE":  # by its id alone: what that stack left, and nothing else
            roles.delete_left_roles(aws.client("iam"), cfn, name, self.say, self._confirm, yes=yes,
                                    stack_id=own["StackId"])
            return
        stacks.require_tool_stack(own, name, "delete")
        stack_id, role = own["StackId"], role_arn or str(own.get("RoleARN") or "")
        retained = stacks.outputs_of(own).get(OUT_SHUTDOWN_ROLE, "")
        if not yes:
            self._confirm(f"Delete stack {name} and every resource in it, the cluster's data included?")
        try:
            for attempt in (1, 2):
                bucket = stacks.key_bucket_of(cfn, stack_id)
                if bucket is not None:
                    self.say(f"emptied bucket {bucket}: {stacks.empty_bucket(s3, bucket)} object versions removed")
                stream = EventStream(cfn, stack_id)
                stream.skip_existing()
                roles.send_delete(cfn, name, stack_id, role_arn)
                self.say(f"deleting stack {name}" + (f" as {role_arn}" if role_arn else ""))
                if not wait:
                    self.say(f"follow it with: cfn-chainermn stack watch {name}")
                    if retained:  # it can go only after DELETE_COMPLETE, which nothing here waits for
                        self.say(roles.left_for_later(stack_id, retained))
                    return
                outcome, logs = follow_stack(aws, self.progress, name, stack_id, stream)
                failure = outcome.failure
                if (attempt == 1 and outcome.status == "DELETE_FAILED" and failure is not None
                        and failure.get("LogicalResourceId") == stacks.KEY_BUCKET_RESOURCE):
                    self.say("a node wrote to the bucket after it was emptied; emptying it again and retrying")
                    continue
                settle(aws, self.progress, name, stack_id, outcome, "DELETE_COMPLETE", logs)
                break
        except StackError as exc:
            if not role:
                raise
            raise StackError(f"{exc}\n{roles.deleted_as(name, role, given=bool(role_arn))}") from None
        if retained:
            roles.remove_retained_role(aws.client("iam"), retained, self.say)

    def watch(self, name: str) -> Outcome:
        """Follow the stack's current operation until it settles; StackError when it ended badly."""
        from cfn_chainermn.stack.cfn import describe, simplify

        aws = self.aws
        stack_id = describe(aws.client("cloudformation"), name)["StackId"]
        outcome, logs = follow_stack(aws, self.progress, name, stack_id)
        want = outcome.status if simplify(outcome.status) in ("complete", "deleted") else "success"
        settle(aws, self.progress, name, stack_id, outcome, want, logs)
        return outcome

    def status(self, name: str) -> tuple[dict[str, Any], list[Node] | None]:
        """The stack, and its live nodes with readiness (None when it has no key bucket yet or they are unreadable)."""
        from cfn_chainermn.aws import mapped
        from cfn_chainermn.stack.cfn import describe

        with mapped(f"reading stack {name}"):
            current = describe(self.aws.client("cloudformation"), name)
        return current, self._nodes(name, current)

    def _nodes(self, name: str, current: dict[str, Any]) -> list[Node] | None:
        from cfn_chainermn.cluster.inventory import list_nodes
        from cfn_chainermn.errors import AwsError
        from cfn_chainermn.names import OUT_BUCKET
        from cfn_chainermn.stack.cfn import outputs_of

        bucket = outputs_of(current).get(OUT_BUCKET)
        if not bucket:
            return None
        try:
            return list_nodes(self.aws.client("ec2"), self.aws.client("s3"), name, bucket)
        except AwsError as exc:
            self.say(f"warning: could not list the nodes: {exc}")
            return None

    def idle(self, current: dict[str, Any]) -> dict[str, Any] | None:
        """What the master last published of its idle count (node/idle.py); None when the stack has no
        idle limit (no call then), nothing is published yet, or it is unreadable (a warning says why)."""
        import json

        from cfn_chainermn.cluster.inventory import MISSING_CODES, get_bytes
        from cfn_chainermn.config.sections import has_idle_limit
        from cfn_chainermn.errors import AwsError
        from cfn_chainermn.names import IDLE_STATUS, OUT_BUCKET
        from cfn_chainermn.stack.cfn import outputs_of, parameters_of

        bucket = outputs_of(current).get(OUT_BUCKET)
        if not bucket or not has_idle_limit(parameters_of(current)):
            return None
        try:
            record = json.loads(get_bytes(self.aws.client("s3"), bucket, IDLE_STATUS))
        except AwsError as exc:
            if exc.code not in MISSING_CODES:
                self.say(f"warning: could not read the idle count: {exc}")
            return None
        except ValueError:
            self.say(f"warning: {IDLE_STATUS} is not JSON")
            return None
        return record if isinstance(record, dict) else None

    def outputs(self, name: str) -> dict[str, str]:
        from cfn_chainermn.stack.cfn import outputs

        return outputs(self.aws.client("cloudformation"), name)

    def events(self, name: str) -> list[dict[str, Any]]:
        """The events of the stack's latest operation, oldest first."""
        from cfn_chainermn.aws import mapped
        from cfn_chainermn.stack.cfn import describe
        from cfn_chainermn.stack.watch import EventStream

        cfn = self.aws.client("cloudformation")
        with mapped(f"reading the events of stack {name}"):
            return EventStream(cfn, describe(cfn, name)["StackId"]).poll()

    def stacks(self) -> list[dict[str, Any]]:
        """This tool's stacks in the region."""
        from cfn_chainermn.stack.cfn import list_stacks

        return list_stacks(self.aws.client("cloudformation"))
