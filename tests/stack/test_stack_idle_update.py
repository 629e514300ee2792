"""`stack update` that drops idle shutdown's `delete`: CloudFormation keeps the ShutdownRole it
removes (DeletionPolicy Retain applies to updates too), and with the stack's ShutdownRoleArn
output gone nothing would find it again, so the update deletes it once the stack is
UPDATE_COMPLETE. Over Stubber: moto keeps a resource whose condition turns false, and its output,
through an update, so it cannot show what CloudFormation does."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.stub import ANY
from stack_helpers import AMI, NAME, STACK_ID, event, queue_change_set, stack

from cfn_chainermn.config.model import build

ROLE = "demo-ShutdownRole-AbCdEf"
ROLE_ARN = f"arn:aws:iam::123456789012:role/{ROLE}"
SETTINGS = {"name": NAME, "key_name": "k", "ssh_cidr": "203.0.113.7/32", "instance_type": "g5.xlarge", "workers": 1,
            "ami": AMI, "network": {"availability_zone": "us-east-1d"}}


def _outputs(role: bool) -> list[dict[str, str]]:
    return [{"OutputKey": "ShutdownRoleArn", "OutputValue": ROLE_ARN}] if role else []


def _queue_update(stubbed: Any, before: dict[str, str], after: dict[str, str], *, role_after: bool,
                  wait: bool = True) -> None:
    """One `stack update` from idle settings `before` to `after`: preflight, staging, the change set,
    its execution and, when `wait`, the stack's UPDATE_COMPLETE with its outputs then."""
    current, wanted = (build({**SETTINGS, "idle": idle}, for_stack=True) for idle in (before, after))
    cfn = queue_change_set(stubbed, current, wanted, Outputs=_outputs(True))
    cfn.add_response("describe_change_set", {"Status": "CREATE_COMPLETE"}, None)
    removed = [] if role_after else [{"ResourceChange": {
        "Action": "Remove", "LogicalResourceId": "ShutdownRole", "ResourceType": "AWS::IAM::Role"}}]
    cfn.add_response("describe_change_set", {"Changes": [{"ResourceChange": {
        "Action": "Modify", "LogicalResourceId": "MasterRole", "ResourceType": "AWS::IAM::Role",
        "Replacement": "False"}}, *removed]}, None)
    cfn.add_response("describe_stack_events", {"StackEvents": [event(1, NAME, "CREATE_COMPLETE")]},
                     {"StackName": STACK_ID})
    cfn.add_response("execute_change_set", {}, {"ChangeSetName": ANY, "StackName": NAME})
    if not wait:
        return
    cfn.add_response("describe_stacks", {"Stacks": [stack("UPDATE_COMPLETE", Outputs=_outputs(role_after))]},
                     {"StackName": NAME})
    cfn.add_response("describe_stack_events", {"StackEvents": [
        event(3, NAME, "UPDATE_COMPLETE"), event(2, NAME, "UPDATE_IN_PROGRESS", "User Initiated"),
        event(1, NAME, "CREATE_COMPLETE")]}, None)


@pytest.mark.parametrize("flags", [["--idle-minutes", "off"], ["--idle-action", "stop"]])
def test_an_update_that_drops_the_role_deletes_it_once_the_stack_is_updated(
        stubbed: Any, run_cli: Any, flags: list[str]) -> None:
    after = {"minutes": "off"} if flags[1] == "off" else {"minutes": "30", "action": "stop"}
    _queue_update(stubbed, {"minutes": "30"}, after, role_after=False)
    iam = stubbed("iam")
    iam.add_response("delete_role_policy", {}, {"RoleName": ROLE, "PolicyName": "cfn-chainermn-shutdown"})
    iam.add_response("delete_role", {}, {"RoleName": ROLE})
    result = run_cli("stack", "update", NAME, *flags, "--yes")
    assert result.code == 0, result.err
    err = result.err.splitlines()
    assert err[-2:] == [f"stack {NAME}: UPDATE_COMPLETE", f"deleted the idle shutdown's role {ROLE}"]


def test_an_update_that_keeps_the_role_leaves_it(stubbed: Any, run_cli: Any) -> None:
    _queue_update(stubbed, {"minutes": "30"}, {"minutes": "45"}, role_after=True)
    stubbed("iam")  # activated with nothing queued: any call fails the test
    result = run_cli("stack", "update", NAME, "--idle-minutes", "45", "--yes")
    assert result.code == 0, result.err
    assert "role" not in result.err


def test_an_update_that_does_not_wait_says_how_to_delete_the_role_it_drops(stubbed: Any, run_cli: Any) -> None:
    _queue_update(stubbed, {"minutes": "30"}, {"minutes": "off"}, role_after=False, wait=False)
    stubbed("iam")  # nothing deleted while the update may still need it
    result = run_cli("stack", "update", NAME, "--idle-minutes", "off", "--no-wait", "--yes")
    assert result.code == 0, result.err
    assert result.err.splitlines()[-1] == (
        f"note: the update drops the idle shutdown's role {ROLE}, which CloudFormation keeps; once it is done: "
        f"`aws iam delete-role-policy --role-name {ROLE} --policy-name cfn-chainermn-shutdown && "
        f"aws iam delete-role --role-name {ROLE}`")
