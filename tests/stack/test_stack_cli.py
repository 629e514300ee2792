"""The stack commands after create, end to end over Stubber: delete, scale, update, watch, status."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from botocore.stub import ANY
from stack_helpers import (
    AMI,
    BUCKET,
    MASTER,
    NAME,
    OWN,
    PINNED,
    STACK_ID,
    WORKER,
    described_types,
    event,
    queue_change_set,
    queue_template_upload,
    stack,
)

from cfn_chainermn.config.model import build
from cfn_chainermn.config.params import template_parameters
from cfn_chainermn.stack.cfn import compact, stack_tags
from cfn_chainermn.template import render


def test_delete_empties_the_key_bucket_only_then_reports_delete_failed(stubbed: Any, run_cli: Any) -> None:
    cfn, s3 = stubbed("cloudformation"), stubbed("s3")
    cfn.add_response("describe_stacks", {"Stacks": [stack("CREATE_COMPLETE", Tags=OWN)]}, {"StackName": NAME})
    # Another bucket listed first (say one added by hand with DeletionPolicy Retain) is not emptied:
    # the only list_object_versions/delete_objects queued are the key bucket's.
    cfn.add_response("list_stack_resources", {"StackResourceSummaries": [
        {"LogicalResourceId": "DataBucket", "PhysicalResourceId": "team-data", "ResourceType": "AWS::S3::Bucket",
         "LastUpdatedTimestamp": "2026-01-01T00:00:00Z", "ResourceStatus": "CREATE_COMPLETE"},
        {"LogicalResourceId": "KeyBucket", "PhysicalResourceId": BUCKET, "ResourceType": "AWS::S3::Bucket",
         "LastUpdatedTimestamp": "2026-01-01T00:00:00Z", "ResourceStatus": "CREATE_COMPLETE"}]},
        {"StackName": STACK_ID})
    s3.add_response("list_object_versions", {"Versions": [{"Key": "cluster-key/id_ed25519", "VersionId": "v1"}],
                                             "DeleteMarkers": [{"Key": "nodes/i-1/ready", "VersionId": "d1"}]},
                    {"Bucket": BUCKET})
    s3.add_response("delete_objects", {}, {"Bucket": BUCKET, "Delete": {"Quiet": True, "Objects": [
        {"Key": "cluster-key/id_ed25519", "VersionId": "v1"}, {"Key": "nodes/i-1/ready", "VersionId": "d1"}]}})
    cfn.add_response("describe_stack_events", {"StackEvents": [event(2, NAME, "CREATE_COMPLETE")]},
                     {"StackName": STACK_ID})
    cfn.add_response("delete_stack", {}, {"StackName": STACK_ID})
    cfn.add_response("describe_stacks", {"Stacks": [stack("DELETE_FAILED")]}, {"StackName": NAME})
    reason = "resource sg-0123456789abcdef0 has a dependent object"
    cfn.add_response("describe_stack_events", {"StackEvents": [
        event(5, NAME, "DELETE_FAILED", "The following resource(s) failed to delete: [ClusterSecurityGroup]"),
        event(4, "ClusterSecurityGroup", "DELETE_FAILED", reason, rtype="AWS::EC2::SecurityGroup"),
        event(3, NAME, "DELETE_IN_PROGRESS", "User Initiated"), event(2, NAME, "CREATE_COMPLETE")]},
        {"StackName": STACK_ID})
    result = run_cli("stack", "delete", NAME, "--yes")
    assert result.code == 3
    assert f"emptied bucket {BUCKET}: 2 object versions removed" in result.err
    assert result.err.splitlines()[-2:] == [
        f"error: stack {NAME} ended DELETE_FAILED; first failure: ClusterSecurityGroup (AWS::EC2::SecurityGroup) "
        f"DELETE_FAILED: {reason}",
        f"error: next: fix the cause above, then run `cfn-chainermn stack delete {NAME}` again",
    ]


def test_scale_shows_the_change_set_and_a_no_discards_it(stubbed: Any, run_cli: Any, monkeypatch: Any) -> None:
    cfn = stubbed("cloudformation")
    params = {"KeyName": "k", "MasterInstanceType": "g5.xlarge", "WorkerInstanceType": "g5.xlarge",
              "WorkerCount": "2"}
    cfn.add_response("describe_stacks", {"Stacks": [stack("CREATE_COMPLETE", Tags=OWN, Parameters=[
        {"ParameterKey": k, "ParameterValue": v} for k, v in params.items()])]}, {"StackName": NAME})
    stubbed("service-quotas").add_response("get_service_quota", {"Quota": {"Value": 64.0}},
                                           {"ServiceCode": "ec2", "QuotaCode": "L-DB2E81BA"})
    cfn.add_response("create_change_set", {"Id": "arn:cs"}, {
        "StackName": NAME, "ChangeSetName": ANY, "ChangeSetType": "UPDATE", "UsePreviousTemplate": True,
        "Capabilities": ["CAPABILITY_IAM"], "Parameters": [
            {"ParameterKey": "KeyName", "UsePreviousValue": True},
            {"ParameterKey": "MasterInstanceType", "UsePreviousValue": True},
            {"ParameterKey": "WorkerInstanceType", "UsePreviousValue": True},
            {"ParameterKey": "WorkerCount", "ParameterValue": "5"}]})
    cfn.add_response("describe_change_set", {"Status": "CREATE_COMPLETE"}, None)
    cfn.add_response("describe_change_set", {"Changes": [{"ResourceChange": {
        "Action": "Modify", "LogicalResourceId": "WorkerGroup", "ResourceType": "AWS::AutoScaling::AutoScalingGroup",
        "Replacement": "False"}}]}, None)
    cfn.add_response("delete_change_set", {}, {"ChangeSetName": ANY, "StackName": NAME})
    monkeypatch.setattr("cfn_chainermn.stack.cfn.time.sleep", lambda s: None)
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    result = run_cli("stack", "scale", NAME, "--workers", "5")
    assert result.code == 1
    assert "cost: 6 nodes, 6 GPUs: about $6.04/h" in result.err
    assert "  Modify  WorkerGroup AWS::AutoScaling::AutoScalingGroup" in result.err
    assert "Apply these changes to stack demo? [y/N]" in result.err
    assert result.err.rstrip().endswith("nothing was changed (pass --yes to skip this question)")


def test_scale_up_beyond_the_vcpu_quota_stops_before_any_change(stubbed: Any, run_cli: Any) -> None:
    params = {"MasterInstanceType": "p3.16xlarge", "WorkerInstanceType": "p3.16xlarge", "WorkerCount": "3",
              "SpotWorkers": "false"}
    stubbed("cloudformation").add_response("describe_stacks", {"Stacks": [stack(
        "UPDATE_COMPLETE", Tags=OWN,
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()])]}, {"StackName": NAME})
    stubbed("service-quotas").add_response("get_service_quota", {"Quota": {"Value": 512.0}},
                                           {"ServiceCode": "ec2", "QuotaCode": "L-417A185B"})
    result = run_cli("stack", "scale", NAME, "--workers", "16", "--yes")
    assert result.code == 4
    assert result.err.splitlines()[-1] == (
        "error: quota: the cluster needs 1088 vCPUs of Running On-Demand P instances (L-417A185B) but the quota in "
        "us-east-1 is 512; request an increase in the Service Quotas console, or use fewer or smaller instances")


def test_ctrl_c_stops_watching_not_the_stack(stubbed: Any, run_cli: Any, monkeypatch: Any) -> None:
    cfn = stubbed("cloudformation")
    cfn.add_response("describe_stacks", {"Stacks": [stack("CREATE_IN_PROGRESS")]}, {"StackName": NAME})
    cfn.add_response("describe_stacks", {"Stacks": [stack("CREATE_IN_PROGRESS")]}, {"StackName": NAME})
    cfn.add_response("describe_stack_events", {"StackEvents": [event(0, NAME, "CREATE_IN_PROGRESS")]}, None)

    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("botocore.waiter.time.sleep", interrupt)
    result = run_cli("stack", "watch", NAME)
    assert result.code == 130
    assert result.err.splitlines()[-1] == (
        f"stopped watching; stack {NAME} carries on. Resume with: cfn-chainermn stack watch {NAME}")


def test_status_json_goes_to_stdout_alone_with_the_nodes(stubbed: Any, run_cli: Any) -> None:
    stubbed("cloudformation").add_response("describe_stacks", {"Stacks": [stack("UPDATE_ROLLBACK_COMPLETE", Outputs=[
        {"OutputKey": "KeyBucketName", "OutputValue": BUCKET}])]}, {"StackName": NAME})
    stubbed("ec2").add_response("describe_instances", {"Reservations": [{"Instances": [
        {"InstanceId": WORKER, "PrivateIpAddress": "10.0.0.7", "InstanceType": "p3.16xlarge",
         "State": {"Name": "running"}, "Tags": [{"Key": "cfn-chainermn:role", "Value": "worker"}]},
        {"InstanceId": MASTER, "PrivateIpAddress": "10.0.0.5", "InstanceType": "p3.16xlarge",
         "State": {"Name": "running"}, "Tags": [{"Key": "cfn-chainermn:role", "Value": "master"}]}]}]}, None)
    stubbed("s3").add_response("list_objects_v2", {"Contents": [{"Key": f"nodes/{MASTER}/ready"}]},
                               {"Bucket": BUCKET, "Prefix": "nodes/"})
    result = run_cli("stack", "status", NAME, "--output", "json")
    assert result.code == 0 and result.err == ""
    data = json.loads(result.out)
    assert (data["name"], data["status"], data["state"], data["outputs"]) == (
        NAME, "UPDATE_ROLLBACK_COMPLETE", "rolled-back", {"KeyBucketName": BUCKET})
    assert [(n["role"], n["instance_id"], n["ready"], n["slots"]) for n in data["nodes"]] == [
        ("master", MASTER, True, 8), ("worker", WORKER, False, 8)]


def test_stack_not_found_is_one_clean_line(stubbed: Any, run_cli: Any) -> None:
    stubbed("cloudformation").add_client_error(
        "describe_stacks", "ValidationError", "Stack with id nope does not exist",
        expected_params={"StackName": "nope"})
    result = run_cli("stack", "outputs", "nope")
    assert (result.code, result.out) == (3, "")
    assert result.err == "error: stack nope not found; `cfn-chainermn stack list` shows yours\n"


def test_update_renders_the_new_config_keeps_the_az_and_follows_the_change_set(stubbed: Any, run_cli: Any) -> None:
    cfn, ec2 = stubbed("cloudformation"), stubbed("ec2")
    cfn.add_response("describe_stacks", {"Stacks": [stack("CREATE_COMPLETE", Tags=OWN, Parameters=[
        {"ParameterKey": "AvailabilityZone", "ParameterValue": "us-east-1d"},
        {"ParameterKey": "WorkerCount", "ParameterValue": "2"}])]}, {"StackName": NAME})
    ec2.add_response("describe_key_pairs", {"KeyPairs": [{"KeyName": "k"}]}, {"KeyNames": ["k"]})
    ec2.add_response("describe_instance_type_offerings", {"InstanceTypeOfferings": [
        {"InstanceType": "g5.xlarge", "LocationType": "availability-zone", "Location": az}
        for az in ("us-east-1a", "us-east-1d")]}, None)
    ec2.add_response("describe_instance_types", described_types("g5.xlarge"), {"InstanceTypes": ["g5.xlarge"]})
    stubbed("service-quotas").add_response("get_service_quota", {"Quota": {"Value": 64.0}}, None)
    ec2.add_response("describe_images", {"Images": [{"ImageId": AMI}]}, {"ImageIds": [AMI]})
    cfg = build({"name": NAME, "key_name": "k", "ssh_cidr": "203.0.113.7/32", "instance_type": "g5.xlarge",
                 "workers": 4, "ami": AMI, "tags": {"team": "ml"}, "agent_source": "index", "agent_package": PINNED,
                 "network": {"availability_zone": "us-east-1d"}}, for_stack=True)
    url = queue_template_upload(stubbed, compact(render(cfg, "json")), new_bucket=False)
    cfn.add_response("create_change_set", {"Id": "arn:cs"}, {
        "StackName": NAME, "ChangeSetName": ANY, "ChangeSetType": "UPDATE",
        "TemplateURL": url, "Capabilities": ["CAPABILITY_IAM"],
        "Tags": stack_tags({"team": "ml"}),
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in template_parameters(cfg).items()]})
    cfn.add_response("describe_change_set", {"Status": "CREATE_COMPLETE"}, None)
    cfn.add_response("describe_change_set", {"Changes": [{"ResourceChange": {
        "Action": "Modify", "LogicalResourceId": "WorkerGroup", "ResourceType": "AWS::AutoScaling::AutoScalingGroup",
        "Replacement": "False"}}]}, None)
    cfn.add_response("describe_stack_events", {"StackEvents": [event(1, NAME, "CREATE_COMPLETE")]},
                     {"StackName": STACK_ID})
    cfn.add_response("execute_change_set", {}, {"ChangeSetName": ANY, "StackName": NAME})
    cfn.add_response("describe_stacks", {"Stacks": [stack("UPDATE_COMPLETE", Outputs=[
        {"OutputKey": "KeyBucketName", "OutputValue": BUCKET}])]}, {"StackName": NAME})
    cfn.add_response("describe_stack_events", {"StackEvents": [
        event(4, NAME, "UPDATE_COMPLETE"), event(3, "WorkerGroup", "UPDATE_COMPLETE",
                                                 rtype="AWS::AutoScaling::AutoScalingGroup"),
        event(2, NAME, "UPDATE_IN_PROGRESS", "User Initiated"), event(1, NAME, "CREATE_COMPLETE")]}, None)
    result = run_cli("stack", "update", NAME, "--key-name", "k", "--ssh-cidr", "203.0.113.7/32", "--instance-type",
                     "g5.xlarge", "--workers", "4", "--ami", AMI, "--tag", "team=ml", "--agent-source", "index",
                     "--agent-package", PINNED, "--yes", "--output", "json")
    assert result.code == 0, result.err
    assert json.loads(result.out) == {"KeyBucketName": BUCKET}
    err = result.err.splitlines()
    assert "preflight: ok: key pair k; g5.xlarge offered in us-east-1d; image " + AMI in err
    assert "  Modify  WorkerGroup AWS::AutoScaling::AutoScalingGroup" in err
    assert [line.split()[1:3] for line in err if line[:2].isdigit()] == [
        [NAME, "UPDATE_IN_PROGRESS"], ["WorkerGroup", "UPDATE_COMPLETE"], [NAME, "UPDATE_COMPLETE"]]
    assert err[-1] == f"stack {NAME}: UPDATE_COMPLETE"


def test_watch_of_a_settled_stack_shows_its_last_operation_and_outputs(stubbed: Any, run_cli: Any) -> None:
    cfn = stubbed("cloudformation")
    cfn.add_response("describe_stacks", {"Stacks": [stack("UPDATE_COMPLETE")]}, {"StackName": NAME})
    cfn.add_response("describe_stacks", {"Stacks": [stack("UPDATE_COMPLETE", Outputs=[
        {"OutputKey": "KeyBucketName", "OutputValue": BUCKET}])]}, {"StackName": NAME})
    cfn.add_response("describe_stack_events", {"StackEvents": [
        event(4, NAME, "UPDATE_COMPLETE"), event(3, NAME, "UPDATE_IN_PROGRESS", "User Initiated"),
        event(2, NAME, "CREATE_COMPLETE")]}, {"StackName": STACK_ID})
    result = run_cli("stack", "watch", NAME, "--output", "json")
    assert result.code == 0, result.err
    assert json.loads(result.out) == {"KeyBucketName": BUCKET}
    assert [line.split()[2] for line in result.err.splitlines()[:2]] == ["UPDATE_IN_PROGRESS", "UPDATE_COMPLETE"]
    assert result.err.splitlines()[-1] == f"stack {NAME}: UPDATE_COMPLETE"


def test_update_with_one_flag_keeps_every_other_setting_of_the_stack(stubbed: Any, run_cli: Any) -> None:
    """`stack update demo --instance-type g5.2xlarge` changes the type and nothing else."""
    current = build({"name": NAME, "key_name": "k", "ssh_cidr": "203.0.113.7/32", "instance_type": "g5.xlarge",
                     "workers": 3, "ami": AMI, "spot_workers": True, "root_volume_size": 200,
                     "efs": {"mode": "none", "mount_point": "/shared"},
                     "network": {"availability_zone": "us-east-1d", "vpc_cidr": "10.9.0.0/16",
                                 "subnet_cidr": "10.9.1.0/24"}}, for_stack=True)
    cfn, ec2 = stubbed("cloudformation"), stubbed("ec2")
    cfn.add_response("describe_stacks", {"Stacks": [stack("CREATE_COMPLETE", Parameters=[
        {"ParameterKey": k, "ParameterValue": v} for k, v in template_parameters(current).items()],
        Tags=[{"Key": "team", "Value": "ml"}, {"Key": "cfn-chainermn:version", "Value": "0.1.0"}])]},
        {"StackName": NAME})
    ec2.add_response("describe_key_pairs", {"KeyPairs": [{"KeyName": "k"}]}, {"KeyNames": ["k"]})
    ec2.add_response("describe_instance_type_offerings", {"InstanceTypeOfferings": [
        {"InstanceType": t, "LocationType": "availability-zone", "Location": "us-east-1d"}
        for t in ("g5.2xlarge", "g5.xlarge")]}, None)
    for t in ("g5.2xlarge", "g5.xlarge"):
        ec2.add_response("describe_instance_types", described_types(t), {"InstanceTypes": [t]})
    quotas = stubbed("service-quotas")
    for _ in ("on-demand master", "spot workers"):
        quotas.add_response("get_service_quota", {"Quota": {"Value": 256.0}}, None)
    ec2.add_response("describe_images", {"Images": [{"ImageId": AMI}]}, {"ImageIds": [AMI]})
    wanted = build({"name": NAME, "key_name": "k", "ssh_cidr": "203.0.113.7/32", "instance_type": "g5.2xlarge",
                    "worker_instance_type": "g5.xlarge", "workers": 3, "ami": AMI, "spot_workers": True,
                    "root_volume_size": 200, "tags": {"team": "ml"}, "efs": {"mode": "none", "mount_point": "/shared"},
                    "network": {"availability_zone": "us-east-1d", "vpc_cidr": "10.9.0.0/16",
                                "subnet_cidr": "10.9.1.0/24"}}, for_stack=True)
    url = queue_template_upload(stubbed, compact(render(wanted, "json")), new_bucket=False)
    cfn.add_response("create_change_set", {"Id": "arn:cs"}, {
        "StackName": NAME, "ChangeSetName": ANY, "ChangeSetType": "UPDATE",
        "TemplateURL": url, "Capabilities": ["CAPABILITY_IAM"],
        "Tags": stack_tags({"team": "ml"}),
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in template_parameters(wanted).items()]})
    cfn.add_response("describe_change_set", {"Status": "FAILED", "StatusReason": "stop here"}, None)
    cfn.add_response("delete_change_set", {}, {"ChangeSetName": ANY, "StackName": NAME})
    result = run_cli("stack", "update", NAME, "--instance-type", "g5.2xlarge", "--yes")
    # create_change_set's expected parameters are the assertion: every other setting came from the stack
    assert result.err.splitlines()[-1] == f"error: change set for stack {NAME} failed: stop here", result.err


@pytest.mark.parametrize("args", [["delete", "--yes"], ["update", "--workers", "3", "--yes"],
                                  ["scale", "--workers", "3", "--yes"]], ids=lambda a: a[0])
def test_changing_commands_refuse_a_stack_this_tool_did_not_create(
        stubbed: Any, run_cli: Any, args: list[str]) -> None:
    """A mistyped name must not empty, change or delete someone else's stack: one describe, then stop."""
    params = [{"ParameterKey": "WorkerCount", "ParameterValue": "2"}]
    stubbed("cloudformation").add_response("describe_stacks", {"Stacks": [stack(
        "CREATE_COMPLETE", Parameters=params, Tags=[{"Key": "team", "Value": "data"}])]}, {"StackName": NAME})
    result = run_cli("stack", args[0], NAME, *args[1:])
    assert (result.code, result.out) == (3, "")
    assert result.err == (f"error: stack {NAME} has no cfn-chainermn:version tag, so cfn-chainermn did not create "
                          f"it; refusing to {args[0]} it (check the name; `cfn-chainermn stack list` shows yours)\n")


def test_the_bucket_delete_empties_is_the_templates_key_bucket() -> None:
    from cfn_chainermn.stack.cfn import KEY_BUCKET_RESOURCE

    cfg = build({"name": NAME, "key_name": "k", "ssh_cidr": "203.0.113.7/32"}, for_stack=True)
    resources = json.loads(render(cfg, "json"))["Resources"]
    assert resources[KEY_BUCKET_RESOURCE]["Type"] == "AWS::S3::Bucket"
    assert [k for k, r in resources.items() if r["Type"] == "AWS::S3::Bucket"] == [KEY_BUCKET_RESOURCE]


def _update_agent(stubbed: Any, run_cli: Any, now: dict[str, Any], flags: list[str],
                  then: dict[str, Any]) -> Any:
    """`stack update` of a stack whose agent settings are `now`: the change set gets `then`."""
    base = {"name": NAME, "key_name": "k", "ssh_cidr": "203.0.113.7/32", "instance_type": "g5.xlarge",
            "ami": AMI, "efs": {"mode": "none"}, "network": {"availability_zone": "us-east-1d"}}
    current, wanted = build({**base, **now}, for_stack=True), build({**base, **then}, for_stack=True)
    cfn = queue_change_set(stubbed, current, wanted)
    cfn.add_response("describe_change_set", {"Status": "FAILED", "StatusReason": "stop here"}, None)
    cfn.add_response("delete_change_set", {}, {"ChangeSetName": ANY, "StackName": NAME})
    return run_cli("stack", "update", NAME, *flags, "--yes")


INDEX = {"agent_source": "index", "agent_package": PINNED}


@pytest.mark.parametrize(("now", "flags", "then"), [
    (INDEX, ["--agent-source", "template"], {"agent_source": "template"}),  # leaving index drops the pin
    (INDEX, ["--workers", "1"], {**INDEX, "workers": 1}),                  # the pin carries over
    ({}, ["--agent-source", "index", "--agent-package", PINNED], INDEX),
    ({**INDEX, "workers": 2}, ["--agent-source", "index"], {**INDEX, "workers": 2}),  # the stack's pin completes it
], ids=["index-to-template", "index-kept", "template-to-index", "index-flag-alone"])
def test_update_moves_between_agent_sources(stubbed: Any, run_cli: Any, now: dict[str, Any], flags: list[str],
                                            then: dict[str, Any]) -> None:
    result = _update_agent(stubbed, run_cli, now, flags, then)
    # create_change_set's expected parameters are the assertion
    assert result.err.splitlines()[-1] == f"error: change set for stack {NAME} failed: stop here", result.err
