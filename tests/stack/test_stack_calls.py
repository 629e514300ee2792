"""stack.py and watch.py against botocore Stubber: every call's parameters pinned."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.stub import ANY
from stack_helpers import NAME, STACK_ID, event, stack

from cfn_chainermn import __version__
from cfn_chainermn.errors import AwsError, StackError
from cfn_chainermn.stack import cfn as st
from cfn_chainermn.stack.watch import EventStream, follow, format_event, root_cause


def test_create_stack_passes_template_parameters_capabilities_and_tags(stubbed: Any) -> None:
    cfn = stubbed.client("cloudformation")
    tags = st.stack_tags({"team": "ml"})
    assert tags == [{"Key": "cfn-chainermn:version", "Value": __version__}, {"Key": "team", "Value": "ml"}]
    stubbed("cloudformation").add_response("create_stack", {"StackId": STACK_ID}, {
        "StackName": NAME, "TemplateBody": '{"Resources":{}}',
        "Parameters": [{"ParameterKey": "KeyName", "ParameterValue": "k"},
                       {"ParameterKey": "WorkerCount", "ParameterValue": "2"}],
        "Capabilities": ["CAPABILITY_IAM"], "OnFailure": "DO_NOTHING", "Tags": tags,
    })
    stack_id = st.create(cfn, NAME, {"TemplateBody": '{"Resources":{}}'}, {"KeyName": "k", "WorkerCount": "2"},
                         tags, on_failure="keep")
    assert stack_id == STACK_ID


def test_create_of_an_existing_stack_says_what_to_do(stubbed: Any) -> None:
    stubbed("cloudformation").add_client_error(
        "create_stack", "AlreadyExistsException", f"Stack [{NAME}] already exists")
    with pytest.raises(StackError, match=f"stack {NAME} already exists; `cfn-chainermn stack update {NAME}`"):
        st.create(stubbed.client("cloudformation"), NAME, {"TemplateBody": "{}"}, {}, [])


def test_template_goes_inline_below_the_limit_and_through_s3_above() -> None:
    uploaded: list[str] = []

    def upload(body: str) -> str:
        uploaded.append(body)
        return "https://b.s3.us-east-1.amazonaws.com/templates/x/demo.json"

    small = "x" * (st.TEMPLATE_BODY_LIMIT - 1)
    assert st.template_source(small, upload) == {"TemplateBody": small}
    big = "x" * st.TEMPLATE_BODY_LIMIT
    assert st.template_source(big, upload) == {"TemplateURL": "https://b.s3.us-east-1.amazonaws.com/templates/x/demo.json"}
    assert uploaded == [big]
    assert st.compact('{\n  "a": [1, 2],\n  "b": {"c": "d"}\n}') == '{"a":[1,2],"b":{"c":"d"}}'


def test_missing_stack_is_a_clean_message(stubbed: Any) -> None:
    stubbed("cloudformation").add_client_error(
        "describe_stacks", "ValidationError", f"Stack with id {NAME} does not exist",
        expected_params={"StackName": NAME})
    with pytest.raises(st.StackNotFound, match=f"^stack {NAME} not found; `cfn-chainermn stack list` shows yours$"):
        st.outputs(stubbed.client("cloudformation"), NAME)


def test_outputs_by_name(stubbed: Any) -> None:
    stubbed("cloudformation").add_response("describe_stacks", {"Stacks": [stack("CREATE_COMPLETE", Outputs=[
        {"OutputKey": "ClusterMasterPublicDNS", "OutputValue": "ec2-1-2-3-4.compute-1.amazonaws.com"},
        {"OutputKey": "KeyBucketName", "OutputValue": "demo-keybucket-1"}])]}, {"StackName": NAME})
    assert st.outputs(stubbed.client("cloudformation"), NAME) == {
        "ClusterMasterPublicDNS": "ec2-1-2-3-4.compute-1.amazonaws.com", "KeyBucketName": "demo-keybucket-1"}


def test_list_keeps_only_this_tools_stacks_across_pages(stubbed: Any) -> None:
    mine = stack("CREATE_COMPLETE", Tags=[{"Key": "cfn-chainermn:version", "Value": "0.1.0"}])
    other = {**stack("CREATE_COMPLETE"), "StackName": "someone-elses"}
    cfn = stubbed("cloudformation")
    cfn.add_response("describe_stacks", {"Stacks": [other], "NextToken": "p2"}, {})
    cfn.add_response("describe_stacks", {"Stacks": [mine]}, {"NextToken": "p2"})
    assert [s["StackName"] for s in st.list_stacks(stubbed.client("cloudformation"))] == [NAME]


def test_change_set_is_created_waited_for_and_described_page_by_page(stubbed: Any) -> None:
    cfn = stubbed("cloudformation")
    cfn.add_response("create_change_set", {"Id": "arn:cs", "StackId": STACK_ID}, {
        "StackName": NAME, "ChangeSetName": ANY, "ChangeSetType": "UPDATE", "UsePreviousTemplate": True,
        "Parameters": [{"ParameterKey": "KeyName", "UsePreviousValue": True},
                       {"ParameterKey": "WorkerCount", "ParameterValue": "3"}],
        "Capabilities": ["CAPABILITY_IAM"]})
    cfn.add_response("describe_change_set", {"Status": "CREATE_PENDING", "ExecutionStatus": "UNAVAILABLE"},
                     {"ChangeSetName": ANY, "StackName": NAME})
    cfn.add_response("describe_change_set", {"Status": "CREATE_COMPLETE", "ExecutionStatus": "AVAILABLE"},
                     {"ChangeSetName": ANY, "StackName": NAME})
    asg = {"Type": "Resource", "ResourceChange": {"Action": "Modify", "LogicalResourceId": "WorkerGroup",
                                                  "ResourceType": "AWS::AutoScaling::AutoScalingGroup",
                                                  "Replacement": "False"}}
    lt = {"Type": "Resource", "ResourceChange": {"Action": "Modify", "LogicalResourceId": "WorkerLaunchTemplate",
                                                 "ResourceType": "AWS::EC2::LaunchTemplate",
                                                 "Replacement": "Conditional"}}
    cfn.add_response("describe_change_set", {"Changes": [asg], "NextToken": "n2"},
                     {"ChangeSetName": ANY, "StackName": NAME})
    cfn.add_response("describe_change_set", {"Changes": [lt]},
                     {"ChangeSetName": ANY, "StackName": NAME, "NextToken": "n2"})
    change_set = st.create_change_set(stubbed.client("cloudformation"), NAME, None,
                                      {"KeyName": None, "WorkerCount": "3"}, delay=0)
    assert change_set is not None and change_set.name.startswith("cfn-chainermn-")
    assert change_set.changes == [
        "Modify  WorkerGroup AWS::AutoScaling::AutoScalingGroup",
        "Modify  WorkerLaunchTemplate AWS::EC2::LaunchTemplate (may replace it)",
    ]
    cfn.add_response("execute_change_set", {}, {"ChangeSetName": change_set.name, "StackName": NAME})
    st.execute_change_set(stubbed.client("cloudformation"), change_set)


def test_change_set_without_changes_is_removed_and_reported_as_none(stubbed: Any) -> None:
    cfn = stubbed("cloudformation")
    cfn.add_response("create_change_set", {"Id": "arn:cs"}, None)
    cfn.add_response("describe_change_set", {
        "Status": "FAILED", "StatusReason": "The submitted information didn't contain changes. Submit different "
        "information to create a change set."}, None)
    cfn.add_response("delete_change_set", {}, {"ChangeSetName": ANY, "StackName": NAME})
    assert st.create_change_set(stubbed.client("cloudformation"), NAME, {"TemplateBody": "{}"},
                                {"WorkerCount": "2"}, [], delay=0) is None


def test_empty_bucket_deletes_every_version_and_delete_marker_page_by_page(stubbed: Any) -> None:
    s3 = stubbed("s3")
    s3.add_response("list_object_versions", {
        "Versions": [{"Key": "logs/i-1/agent.log", "VersionId": "v1"},
                     {"Key": "logs/i-1/agent.log", "VersionId": "v2"}],
        "DeleteMarkers": [{"Key": "cluster-key/id_ed25519", "VersionId": "m1"}],
        "IsTruncated": True, "NextKeyMarker": "logs/i-1/agent.log", "NextVersionIdMarker": "v2"}, {"Bucket": "kb"})
    s3.add_response("delete_objects", {}, {"Bucket": "kb", "Delete": {"Quiet": True, "Objects": [
        {"Key": "logs/i-1/agent.log", "VersionId": "v1"}, {"Key": "logs/i-1/agent.log", "VersionId": "v2"},
        {"Key": "cluster-key/id_ed25519", "VersionId": "m1"}]}})
    s3.add_response("list_object_versions", {"Versions": [{"Key": "nodes/i-1/ready", "VersionId": "v9"}],
                                             "IsTruncated": False},
                    {"Bucket": "kb", "KeyMarker": "logs/i-1/agent.log", "VersionIdMarker": "v2"})
    s3.add_response("delete_objects", {}, {"Bucket": "kb", "Delete": {"Quiet": True, "Objects": [
        {"Key": "nodes/i-1/ready", "VersionId": "v9"}]}})
    assert st.empty_bucket(stubbed.client("s3"), "kb") == 4


def test_empty_bucket_reports_objects_it_could_not_delete(stubbed: Any) -> None:
    s3 = stubbed("s3")
    s3.add_response("list_object_versions", {"Versions": [{"Key": "a", "VersionId": "v1"}]}, {"Bucket": "kb"})
    s3.add_response("delete_objects", {"Errors": [{"Key": "a", "Code": "AccessDenied", "Message": "Access Denied"}]},
                    None)
    with pytest.raises(StackError, match="could not empty bucket kb: a: AccessDenied Access Denied"):
        st.empty_bucket(stubbed.client("s3"), "kb")


def test_a_gone_bucket_is_already_empty_but_other_errors_are_mapped(stubbed: Any) -> None:
    stubbed("s3").add_client_error("list_object_versions", "NoSuchBucket", "gone")
    assert st.empty_bucket(stubbed.client("s3"), "kb") == 0
    stubbed("s3").add_client_error("list_object_versions", "AccessDenied", "Access Denied")
    with pytest.raises(AwsError, match=r"emptying bucket kb: AccessDenied: Access Denied \(the credentials"):
        st.empty_bucket(stubbed.client("s3"), "kb")


def test_events_page_back_to_the_operation_start_then_only_new_ones(stubbed: Any) -> None:
    cfn = stubbed("cloudformation")
    old_op = [event(1, NAME, "CREATE_COMPLETE"), event(0, NAME, "CREATE_IN_PROGRESS", "User Initiated")]
    page1 = [event(5, "WorkerGroup", "UPDATE_IN_PROGRESS"), event(4, "ClusterMaster", "UPDATE_COMPLETE")]
    page2 = [event(3, "ClusterMaster", "UPDATE_IN_PROGRESS"), event(2, NAME, "UPDATE_IN_PROGRESS"), *old_op]
    cfn.add_response("describe_stack_events", {"StackEvents": page1, "NextToken": "t2"}, {"StackName": STACK_ID})
    cfn.add_response("describe_stack_events", {"StackEvents": page2}, {"StackName": STACK_ID, "NextToken": "t2"})
    stream = EventStream(stubbed.client("cloudformation"), STACK_ID)
    assert [e["EventId"] for e in stream.poll()] == ["e-2", "e-3", "e-4", "e-5"]
    newer = [event(6, NAME, "UPDATE_COMPLETE"), *page1]
    cfn.add_response("describe_stack_events", {"StackEvents": newer, "NextToken": "t2"}, {"StackName": STACK_ID})
    assert [e["EventId"] for e in stream.poll()] == ["e-6"]


def test_follow_streams_events_on_each_poll_until_the_stack_settles(stubbed: Any) -> None:
    cfn = stubbed("cloudformation")
    cfn.add_response("describe_stacks", {"Stacks": [stack("CREATE_IN_PROGRESS")]}, {"StackName": NAME})
    cfn.add_response("describe_stack_events", {"StackEvents": [
        event(1, "KeyBucket", "CREATE_IN_PROGRESS", rtype="AWS::S3::Bucket"),
        event(0, NAME, "CREATE_IN_PROGRESS", "User Initiated")]}, {"StackName": STACK_ID})
    cfn.add_response("describe_stacks", {"Stacks": [stack("CREATE_COMPLETE")]}, {"StackName": NAME})
    cfn.add_response("describe_stack_events", {"StackEvents": [
        event(2, NAME, "CREATE_COMPLETE"), event(1, "KeyBucket", "CREATE_IN_PROGRESS")]}, {"StackName": STACK_ID})
    seen: list[str] = []
    outcome = follow(stubbed.client("cloudformation"), STACK_ID, lambda e: seen.append(format_event(e)),
                     name=NAME, delay=0)
    assert outcome.status == "CREATE_COMPLETE" and not outcome.timed_out
    assert seen == [
        "03:04:05  demo                   CREATE_IN_PROGRESS             User Initiated",
        "03:04:06  KeyBucket              CREATE_IN_PROGRESS",
        "03:04:07  demo                   CREATE_COMPLETE",
    ]


def test_follow_reports_a_deleted_stack_once_its_name_is_gone(stubbed: Any) -> None:
    cfn = stubbed("cloudformation")
    cfn.add_response("describe_stacks", {"Stacks": [stack("DELETE_IN_PROGRESS")]}, {"StackName": NAME})
    cfn.add_response("describe_stack_events", {"StackEvents": [event(9, NAME, "DELETE_IN_PROGRESS")]}, None)
    cfn.add_client_error("describe_stacks", "ValidationError", f"Stack with id {NAME} does not exist")
    cfn.add_response("describe_stack_events", {"StackEvents": [event(10, NAME, "DELETE_COMPLETE"),
                                                               event(9, NAME, "DELETE_IN_PROGRESS")]}, None)
    outcome = follow(stubbed.client("cloudformation"), STACK_ID, lambda e: None, name=NAME, delay=0)
    assert outcome.status == "DELETE_COMPLETE" and outcome.stack is None
    assert [e["EventId"] for e in outcome.events] == ["e-9", "e-10"]


def test_follow_stopped_by_an_aws_error_names_the_stack_and_the_error(stubbed: Any) -> None:
    """Any error but ValidationError (the stack is gone) ends the wait as AWS said it, through failure_of."""
    cfn = stubbed("cloudformation")
    cfn.add_client_error("describe_stacks", "AccessDenied", "User: arn:aws:iam::1:user/u is not authorized\nmore",
                         http_status_code=403)
    with pytest.raises(AwsError) as err:
        follow(stubbed.client("cloudformation"), STACK_ID, lambda e: None, name=NAME, delay=0)
    assert str(err.value).startswith(f"watching stack {STACK_ID}: AccessDenied: User: arn:aws:iam::1:user/u is "
                                     "not authorized (the credentials in use lack")
    assert err.value.code == "AccessDenied"


def test_root_cause_is_the_first_failure_not_the_cancellations_after_it() -> None:
    events = [
        event(1, NAME, "CREATE_IN_PROGRESS", "User Initiated"),
        event(2, "Vpc", "CREATE_FAILED", "Resource creation cancelled", rtype="AWS::EC2::VPC"),
        event(3, "ClusterMaster", "CREATE_FAILED", "Received FAILURE signal with UniqueId i-0abc12345678"),
        event(4, "KeyBucket", "CREATE_FAILED", "Resource creation cancelled", rtype="AWS::S3::Bucket"),
        event(5, NAME, "ROLLBACK_IN_PROGRESS", "The following resource(s) failed to create: [ClusterMaster]"),
    ]
    cause = root_cause(events)
    assert cause is not None and cause["LogicalResourceId"] == "ClusterMaster"
    assert root_cause([events[0]]) is None


@pytest.mark.parametrize(("status", "simple"), [
    ("CREATE_IN_PROGRESS", "in-progress"), ("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", "in-progress"),
    ("CREATE_COMPLETE", "complete"), ("UPDATE_COMPLETE", "complete"), ("ROLLBACK_COMPLETE", "failed"),
    ("UPDATE_ROLLBACK_COMPLETE", "rolled-back"), ("DELETE_FAILED", "failed"), ("DELETE_COMPLETE", "deleted"),
    ("ROLLBACK_FAILED", "failed"), ("UPDATE_ROLLBACK_FAILED", "failed"),
])
def test_statuses_reduce_to_what_a_user_acts_on(status: str, simple: str) -> None:
    assert st.simplify(status) == simple


def test_stack_cli_modules_stay_within_the_house_size_and_the_group_keeps_every_command() -> None:
    """Modules are 50-300 lines (house rule); the read-only commands live in cli/stack_read.py."""
    from pathlib import Path

    from cfn_chainermn.cli import stack_cmd

    cli_dir = Path(stack_cmd.__file__).parent
    for path in sorted(cli_dir.glob("stack_*.py")):
        assert 50 <= len(path.read_text().splitlines()) <= 300, path.name
    commands = stack_cmd.stack.commands
    assert sorted(commands) == ["create", "delete", "events", "list", "outputs", "scale", "status", "update", "watch"]
    assert {n for n, c in commands.items() if c.callback.__module__ == "cfn_chainermn.cli.stack_read"} == {
        "events", "list", "outputs", "status", "watch"}
