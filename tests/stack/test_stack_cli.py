"""The stack commands end to end over Stubber: what they call, print, and exit with on failure."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY
from stack_helpers import ACCOUNT, NAME, OWN, STACK_ID, event, stack

from cfn_chainermn.config import DEFAULT_AMI_SSM_PARAMETER, build
from cfn_chainermn.params import template_parameters
from cfn_chainermn.stack import compact, stack_tags
from cfn_chainermn.template import render

AMI = "ami-0123456789abcdef0"
MASTER = "i-0aaaaaaaaaaaaaaa1"
WORKER = "i-0bbbbbbbbbbbbbbb2"
BUCKET = "demo-keybucket-abc"
STAGING = f"cfn-chainermn-staging-{ACCOUNT}-us-east-1"
FLAGS = ["--key-name", "k", "--ssh-cidr", "203.0.113.7/32", "--instance-type", "g5.xlarge", "--workers", "2",
         "--tag", "team=ml"]


def _body(text: str) -> StreamingBody:
    data = text.encode()
    return StreamingBody(io.BytesIO(data), len(data))


def _queue_preflight(stubbed: Any) -> None:
    stubbed("cloudformation").add_client_error(  # the name is free: checked before anything else
        "describe_stacks", "ValidationError", f"Stack with id {NAME} does not exist", 400,
        expected_params={"StackName": NAME})
    ec2, ssm = stubbed("ec2"), stubbed("ssm")
    ec2.add_response("describe_key_pairs", {"KeyPairs": [{"KeyName": "k"}]}, {"KeyNames": ["k"]})
    ec2.add_response("describe_instance_type_offerings", {"InstanceTypeOfferings": [
        {"InstanceType": "g5.xlarge", "LocationType": "availability-zone", "Location": "us-east-1b"}]}, {
        "LocationType": "availability-zone", "Filters": [{"Name": "instance-type", "Values": ["g5.xlarge"]}]})
    stubbed("service-quotas").add_response(
        "get_service_quota", {"Quota": {"Value": 64.0}}, {"ServiceCode": "ec2", "QuotaCode": "L-DB2E81BA"})
    ssm.add_response("get_parameter", {"Parameter": {"Value": AMI}}, {"Name": DEFAULT_AMI_SSM_PARAMETER})
    ec2.add_response("describe_images", {"Images": [{"ImageId": AMI}]}, {"ImageIds": [AMI]})


def _queue_staging(stubbed: Any, wheel: Path) -> str:
    """The staging calls of a first create: each one on the bucket names this account as its owner."""
    stubbed("sts").add_response("get_caller_identity", {"Account": ACCOUNT}, {})
    s3 = stubbed("s3")
    owned = {"Bucket": STAGING, "ExpectedBucketOwner": ACCOUNT}
    s3.add_client_error("head_bucket", "404", "Not Found", 404, expected_params=owned)
    s3.add_response("create_bucket", {}, {"Bucket": STAGING})  # CreateBucket has no ExpectedBucketOwner
    s3.add_response("put_bucket_encryption", {}, {**owned, "ServerSideEncryptionConfiguration": {
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}})
    s3.add_response("put_public_access_block", {}, {**owned, "PublicAccessBlockConfiguration": {
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True, "RestrictPublicBuckets": True}})
    s3.add_response("put_bucket_lifecycle_configuration", {}, {**owned, "LifecycleConfiguration": {
        "Rules": [{"ID": "templates-expire", "Status": "Enabled", "Filter": {"Prefix": "templates/"},
                   "Expiration": {"Days": 7}},
                  {"ID": "abort-incomplete-uploads", "Status": "Enabled", "Filter": {"Prefix": ""},
                   "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]}})
    key = f"agent/{hashlib.sha256(wheel.read_bytes()).hexdigest()[:16]}/{wheel.name}"
    s3.add_response("put_object", {}, {**owned, "Key": key, "Body": wheel.read_bytes(),
                                       "ServerSideEncryption": "AES256"})
    return f"{STAGING}/{key}"


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    path = tmp_path / "cfn_chainermn-0.1.0-py3-none-any.whl"
    path.write_bytes(b"PK\x05\x06" + b"\0" * 18)  # an empty zip: only its upload is under test here
    return path


def test_create_pins_every_call_and_prints_outputs_master_dns_first(stubbed: Any, run_cli: Any, wheel: Path) -> None:
    _queue_preflight(stubbed)
    staged = _queue_staging(stubbed, wheel)
    cfg = build({"name": NAME, "key_name": "k", "ssh_cidr": "203.0.113.7/32", "instance_type": "g5.xlarge",
                 "workers": 2, "tags": {"team": "ml"}, "network": {"availability_zone": "us-east-1b"}},
                for_stack=True)
    params = {**template_parameters(cfg), "AgentWheelS3Path": staged}
    cfn = stubbed("cloudformation")
    cfn.add_response("create_stack", {"StackId": STACK_ID}, {
        "StackName": NAME, "TemplateBody": compact(render(cfg, "json")), "Capabilities": ["CAPABILITY_IAM"],
        "OnFailure": "ROLLBACK", "Tags": stack_tags({"team": "ml"}),
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()]})
    cfn.add_response("describe_stacks", {"Stacks": [stack("CREATE_COMPLETE", Outputs=[
        {"OutputKey": "KeyBucketName", "OutputValue": BUCKET},
        {"OutputKey": "ClusterMasterPublicDNS", "OutputValue": "ec2-203-0-113-9.compute-1.amazonaws.com"}])]},
        {"StackName": NAME})
    cfn.add_response("describe_stack_events", {"StackEvents": [
        event(2, NAME, "CREATE_COMPLETE"), event(1, "ClusterMaster", "CREATE_COMPLETE", physical=MASTER),
        event(0, NAME, "CREATE_IN_PROGRESS", "User Initiated")]}, {"StackName": STACK_ID})
    result = run_cli("stack", "create", NAME, *FLAGS, "--yes", "--agent-wheel", str(wheel))
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "ClusterMasterPublicDNS  ec2-203-0-113-9.compute-1.amazonaws.com",
        f"KeyBucketName           {BUCKET}",
    ]
    err = result.err.splitlines()
    assert err[0].startswith("cost: 3 nodes, 3 GPUs: about $3.02/h On-Demand (us-east-1 list prices as of")
    assert "preflight: ok: key pair k; g5.xlarge offered in us-east-1b; image " + AMI in err
    assert f"agent: staged s3://{staged}" in err
    assert "03:04:06  ClusterMaster          CREATE_COMPLETE" in err
    assert err[-1] == f"stack {NAME}: CREATE_COMPLETE"


UPDATE_IT = f"`cfn-chainermn stack update {NAME}` changes it, or pick another name"
DELETE_IT = (f"and cannot be updated; `cfn-chainermn stack delete {NAME}` removes it, then create it again, "
             "or pick another name")


@pytest.mark.parametrize(("status", "advice"), [
    ("UPDATE_COMPLETE", UPDATE_IT), ("CREATE_COMPLETE", UPDATE_IT), ("UPDATE_ROLLBACK_COMPLETE", UPDATE_IT),
    # CloudFormation refuses to update these: only a delete frees the name
    ("ROLLBACK_COMPLETE", DELETE_IT), ("CREATE_FAILED", DELETE_IT), ("DELETE_FAILED", DELETE_IT),
    ("ROLLBACK_FAILED", DELETE_IT), ("UPDATE_ROLLBACK_FAILED", DELETE_IT),
    ("CREATE_IN_PROGRESS", f"`cfn-chainermn stack watch {NAME}` follows it until it settles, or pick another name"),
])
def test_create_of_an_existing_stack_stops_before_preflight_and_staging(stubbed: Any, run_cli: Any, wheel: Path,
                                                                       status: str, advice: str) -> None:
    stubbed("cloudformation").add_response("describe_stacks", {"Stacks": [stack(status, Tags=OWN)]},
                                           {"StackName": NAME})
    # Nothing else is queued: any EC2, SSM, STS or S3 call would fail the test as an unexpected call.
    result = run_cli("stack", "create", NAME, *FLAGS, "--yes", "--agent-wheel", str(wheel))
    assert result.code == 3, result.err  # a refused stack operation
    sep = " " if advice == DELETE_IT else "; "
    assert result.err.splitlines()[-1] == f"error: stack {NAME} already exists ({status}){sep}{advice}"
    assert "preflight" not in result.err and "agent: staged" not in result.err


def test_rollback_names_the_first_failed_resource_and_shows_its_agent_log(
        stubbed: Any, run_cli: Any, wheel: Path) -> None:
    _queue_preflight(stubbed)
    _queue_staging(stubbed, wheel)
    cfn, s3 = stubbed("cloudformation"), stubbed("s3")
    cfn.add_response("create_stack", {"StackId": STACK_ID}, None)
    reason = f"Received FAILURE signal with UniqueId {MASTER}"
    cfn.add_response("describe_stacks", {"Stacks": [stack("ROLLBACK_IN_PROGRESS")]}, {"StackName": NAME})
    cfn.add_response("describe_stack_events", {"StackEvents": [
        event(4, NAME, "ROLLBACK_IN_PROGRESS", "The following resource(s) failed to create: [ClusterMaster]"),
        event(3, "WorkerGroup", "CREATE_FAILED", "Resource creation cancelled",
              rtype="AWS::AutoScaling::AutoScalingGroup"),
        event(2, "ClusterMaster", "CREATE_FAILED", reason, physical=MASTER),
        event(1, "ClusterMaster", "CREATE_IN_PROGRESS", physical=MASTER),
        event(0, NAME, "CREATE_IN_PROGRESS", "User Initiated")]}, {"StackName": STACK_ID})
    # The log is fetched as soon as the failure shows up, while the rollback still runs.
    cfn.add_response("list_stack_resources", {"StackResourceSummaries": [
        {"LogicalResourceId": "KeyBucket", "PhysicalResourceId": BUCKET, "ResourceType": "AWS::S3::Bucket",
         "LastUpdatedTimestamp": "2026-01-01T00:00:00Z", "ResourceStatus": "CREATE_COMPLETE"}]},
        {"StackName": STACK_ID})
    log = "\n".join(f"line {i}" for i in range(1, 31)) + "\nstep efs failed: mount.nfs4: Connection timed out\n"
    s3.add_response("get_object", {"Body": _body(log)}, {"Bucket": BUCKET, "Key": f"logs/{MASTER}/agent.log"})
    cfn.add_response("describe_stacks", {"Stacks": [stack("ROLLBACK_COMPLETE")]}, {"StackName": NAME})
    cfn.add_response("describe_stack_events", {"StackEvents": [
        event(5, NAME, "ROLLBACK_COMPLETE"), event(4, NAME, "ROLLBACK_IN_PROGRESS")]}, {"StackName": STACK_ID})
    result = run_cli("stack", "create", NAME, *FLAGS, "--yes", "--agent-wheel", str(wheel))
    assert result.code == 3
    assert result.out == ""
    err = result.err.splitlines()
    assert f"last 20 lines of s3://{BUCKET}/logs/{MASTER}/agent.log:" in err
    assert "  | step efs failed: mount.nfs4: Connection timed out" in err
    assert "  | line 12" in err and "  | line 11" not in err  # the last 20 lines only
    assert err[-2:] == [
        f"error: stack {NAME} ended ROLLBACK_COMPLETE; first failure: ClusterMaster (AWS::EC2::Instance) "
        f"CREATE_FAILED: {reason}",
        f"error: next: nothing is left but the stack record: `cfn-chainermn stack delete {NAME}`, then create again",
    ]


def test_signal_timeout_shows_the_not_ready_workers_console_output(stubbed: Any, run_cli: Any) -> None:
    cfn, s3, ec2 = stubbed("cloudformation"), stubbed("s3"), stubbed("ec2")
    cfn.add_response("describe_stacks", {"Stacks": [stack("CREATE_IN_PROGRESS")]}, {"StackName": NAME})
    cfn.add_response("describe_stacks", {"Stacks": [stack("CREATE_FAILED")]}, {"StackName": NAME})
    reason = "Failed to receive 2 resource signal(s) within the specified duration"
    cfn.add_response("describe_stack_events", {"StackEvents": [
        event(6, NAME, "CREATE_FAILED", "The following resource(s) failed to create: [WorkerGroup]"),
        event(5, "WorkerGroup", "CREATE_FAILED", reason, rtype="AWS::AutoScaling::AutoScalingGroup"),
        event(0, NAME, "CREATE_IN_PROGRESS", "User Initiated")]}, {"StackName": STACK_ID})
    cfn.add_response("list_stack_resources", {"StackResourceSummaries": [
        {"LogicalResourceId": "KeyBucket", "PhysicalResourceId": BUCKET, "ResourceType": "AWS::S3::Bucket",
         "LastUpdatedTimestamp": "2026-01-01T00:00:00Z", "ResourceStatus": "CREATE_COMPLETE"}]}, None)
    ec2.add_response("describe_instances", {"Reservations": [{"Instances": [
        {"InstanceId": "i-0ccccccccccccccc3"}, {"InstanceId": WORKER}]}]}, {"Filters": [
            {"Name": "tag:cfn-chainermn:cluster", "Values": [NAME]},
            {"Name": "instance-state-name", "Values": ["pending", "running", "shutting-down", "stopping", "stopped"]},
            {"Name": "tag:cfn-chainermn:role", "Values": ["worker"]}]})
    s3.add_response("head_object", {}, {"Bucket": BUCKET, "Key": "nodes/i-0ccccccccccccccc3/ready"})
    s3.add_client_error("head_object", "404", "Not Found", 404,
                        expected_params={"Bucket": BUCKET, "Key": f"nodes/{WORKER}/ready"})
    s3.add_client_error("get_object", "NoSuchKey", "The specified key does not exist.",
                        expected_params={"Bucket": BUCKET, "Key": f"logs/{WORKER}/agent.log"})
    console = "cloud-init: running UserData\npip install cfn-chainermn==0.1.0\nERROR: No matching distribution\n"
    encoded = base64.b64encode(console.encode()).decode()
    ec2.add_response("get_console_output", {"InstanceId": WORKER, "Output": encoded}, {"InstanceId": WORKER})
    result = run_cli("stack", "watch", NAME, "--region", "us-east-1")
    assert result.code == 3
    err = result.err.splitlines()
    assert f"last 3 lines of the EC2 console output of {WORKER}:" in err
    assert "  | ERROR: No matching distribution" in err
    assert err[-2] == (f"error: stack {NAME} ended CREATE_FAILED; first failure: WorkerGroup "
                       f"(AWS::AutoScaling::AutoScalingGroup) CREATE_FAILED: {reason}")


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
    monkeypatch.setattr("cfn_chainermn.stack.time.sleep", lambda s: None)
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
    stubbed("service-quotas").add_response("get_service_quota", {"Quota": {"Value": 64.0}}, None)
    ec2.add_response("describe_images", {"Images": [{"ImageId": AMI}]}, {"ImageIds": [AMI]})
    cfg = build({"name": NAME, "key_name": "k", "ssh_cidr": "203.0.113.7/32", "instance_type": "g5.xlarge",
                 "workers": 4, "ami": AMI, "tags": {"team": "ml"}, "agent_package": "cfn-chainermn==0.1.0",
                 "network": {"availability_zone": "us-east-1d"}}, for_stack=True)
    cfn.add_response("create_change_set", {"Id": "arn:cs"}, {
        "StackName": NAME, "ChangeSetName": ANY, "ChangeSetType": "UPDATE",
        "TemplateBody": compact(render(cfg, "json")), "Capabilities": ["CAPABILITY_IAM"],
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
                     "--yes", "--output", "json")
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
    quotas = stubbed("service-quotas")
    for _ in ("on-demand master", "spot workers"):
        quotas.add_response("get_service_quota", {"Quota": {"Value": 256.0}}, None)
    ec2.add_response("describe_images", {"Images": [{"ImageId": AMI}]}, {"ImageIds": [AMI]})
    wanted = build({"name": NAME, "key_name": "k", "ssh_cidr": "203.0.113.7/32", "instance_type": "g5.2xlarge",
                    "worker_instance_type": "g5.xlarge", "workers": 3, "ami": AMI, "spot_workers": True,
                    "root_volume_size": 200, "tags": {"team": "ml"}, "efs": {"mode": "none", "mount_point": "/shared"},
                    "network": {"availability_zone": "us-east-1d", "vpc_cidr": "10.9.0.0/16",
                                "subnet_cidr": "10.9.1.0/24"}}, for_stack=True)
    cfn.add_response("create_change_set", {"Id": "arn:cs"}, {
        "StackName": NAME, "ChangeSetName": ANY, "ChangeSetType": "UPDATE",
        "TemplateBody": compact(render(wanted, "json")), "Capabilities": ["CAPABILITY_IAM"],
        "Tags": stack_tags({"team": "ml"}),
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in template_parameters(wanted).items()]})
    cfn.add_response("describe_change_set", {"Status": "FAILED", "StatusReason": "stop here"}, None)
    cfn.add_response("delete_change_set", {}, {"ChangeSetName": ANY, "StackName": NAME})
    result = run_cli("stack", "update", NAME, "--instance-type", "g5.2xlarge", "--agent-source", "index", "--yes")
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
    from cfn_chainermn.stack import KEY_BUCKET_RESOURCE

    cfg = build({"name": NAME, "key_name": "k", "ssh_cidr": "203.0.113.7/32"}, for_stack=True)
    resources = json.loads(render(cfg, "json"))["Resources"]
    assert resources[KEY_BUCKET_RESOURCE]["Type"] == "AWS::S3::Bucket"
    assert [k for k, r in resources.items() if r["Type"] == "AWS::S3::Bucket"] == [KEY_BUCKET_RESOURCE]
