"""`stack delete` of a stack with idle shutdown: once the stack is gone, the ShutdownRole it retains
(template/idle.py: CloudFormation cannot delete the role it deletes with) goes too, by name from
the stack's output; a stack without the role makes no IAM call. Over Stubber."""

from __future__ import annotations

from typing import Any

from stack_helpers import BUCKET, NAME, OWN, STACK_ID, event, stack

ROLE = "demo-ShutdownRole-AbCdEf"
ROLE_ARN = f"arn:aws:iam::123456789012:role/{ROLE}"


def _queue_delete(stubbed: Any, outputs: list[dict[str, str]]) -> None:
    cfn, s3 = stubbed("cloudformation"), stubbed("s3")
    cfn.add_response("describe_stacks", {"Stacks": [stack("CREATE_COMPLETE", Tags=OWN, Outputs=outputs)]},
                     {"StackName": NAME})
    cfn.add_response("list_stack_resources", {"StackResourceSummaries": [
        {"LogicalResourceId": "KeyBucket", "PhysicalResourceId": BUCKET, "ResourceType": "AWS::S3::Bucket",
         "LastUpdatedTimestamp": "2026-01-01T00:00:00Z", "ResourceStatus": "CREATE_COMPLETE"}]},
        {"StackName": STACK_ID})
    s3.add_response("list_object_versions", {}, {"Bucket": BUCKET})
    cfn.add_response("describe_stack_events", {"StackEvents": [event(2, NAME, "CREATE_COMPLETE")]},
                     {"StackName": STACK_ID})
    cfn.add_response("delete_stack", {}, {"StackName": STACK_ID})
    cfn.add_client_error("describe_stacks", "ValidationError", f"Stack with id {NAME} does not exist")
    cfn.add_response("describe_stack_events", {"StackEvents": [
        event(4, NAME, "DELETE_COMPLETE"), event(3, NAME, "DELETE_IN_PROGRESS", "User Initiated")]}, None)


def test_delete_removes_the_retained_shutdown_role_after_the_stack(stubbed: Any, run_cli: Any) -> None:
    _queue_delete(stubbed, [{"OutputKey": "ShutdownRoleArn", "OutputValue": ROLE_ARN}])
    iam = stubbed("iam")
    iam.add_response("delete_role_policy", {}, {"RoleName": ROLE, "PolicyName": "cfn-chainermn-shutdown"})
    iam.add_response("delete_role", {}, {"RoleName": ROLE})
    result = run_cli("stack", "delete", NAME, "--yes")
    assert result.code == 0, result.err
    assert f"deleted the idle shutdown's role {ROLE}" in result.err


def test_a_role_that_cannot_be_deleted_is_a_warning_naming_it(stubbed: Any, run_cli: Any) -> None:
    _queue_delete(stubbed, [{"OutputKey": "ShutdownRoleArn", "OutputValue": ROLE_ARN}])
    stubbed("iam").add_client_error("delete_role_policy", "AccessDenied", "not authorized", 403)
    result = run_cli("stack", "delete", NAME, "--yes")
    assert result.code == 0
    assert f"warning: could not delete the idle shutdown's role {ROLE}" in result.err


def test_a_stack_without_idle_shutdown_makes_no_iam_call(stubbed: Any, run_cli: Any) -> None:
    _queue_delete(stubbed, [])
    stubbed("iam")  # activated with nothing queued: any call fails the test
    result = run_cli("stack", "delete", NAME, "--yes")
    assert result.code == 0 and "role" not in result.err
