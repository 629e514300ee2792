"""`stack create` end to end over Stubber: every call it makes, what it prints, how it fails."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from stack_helpers import (
    AMI,
    BUCKET,
    FLAGS,
    MASTER,
    NAME,
    OWN,
    PINNED,
    STACK_ID,
    WORKER,
    body,
    described_types,
    event,
    queue_template_upload,
    stack,
)

from cfn_chainermn.config.model import DEFAULT_AMI_SSM_PARAMETER, ClusterConfig, build
from cfn_chainermn.config.params import template_parameters
from cfn_chainermn.stack.cfn import TEMPLATE_BODY_LIMIT, compact, stack_tags
from cfn_chainermn.template import render


def _queue_preflight(stubbed: Any) -> None:
    stubbed("cloudformation").add_client_error(  # the name is free: checked before anything else
        "describe_stacks", "ValidationError", f"Stack with id {NAME} does not exist", 400,
        expected_params={"StackName": NAME})
    ec2, ssm = stubbed("ec2"), stubbed("ssm")
    ec2.add_response("describe_key_pairs", {"KeyPairs": [{"KeyName": "k"}]}, {"KeyNames": ["k"]})
    ec2.add_response("describe_instance_type_offerings", {"InstanceTypeOfferings": [
        {"InstanceType": "g5.xlarge", "LocationType": "availability-zone", "Location": "us-east-1b"}]}, {
        "LocationType": "availability-zone", "Filters": [{"Name": "instance-type", "Values": ["g5.xlarge"]}]})
    ec2.add_response("describe_instance_types", described_types("g5.xlarge"), {"InstanceTypes": ["g5.xlarge"]})
    stubbed("service-quotas").add_response(
        "get_service_quota", {"Quota": {"Value": 64.0}}, {"ServiceCode": "ec2", "QuotaCode": "L-DB2E81BA"})
    ssm.add_response("get_parameter", {"Parameter": {"Value": AMI}}, {"Name": DEFAULT_AMI_SSM_PARAMETER})
    ec2.add_response("describe_images", {"Images": [{"ImageId": AMI}]}, {"ImageIds": [AMI]})


def _config(**agent: str) -> ClusterConfig:
    """What FLAGS (and `agent`) give, in the AZ preflight settles on: the config the template is rendered from."""
    return build({"name": NAME, "key_name": "k", "ssh_cidr": "203.0.113.7/32", "instance_type": "g5.xlarge",
                  "workers": 2, "tags": {"team": "ml"}, "network": {"availability_zone": "us-east-1b"}, **agent},
                 for_stack=True)


def test_create_pins_every_call_and_prints_outputs_master_dns_first(stubbed: Any, run_cli: Any) -> None:
    _queue_preflight(stubbed)
    cfg = _config()
    template = compact(render(cfg, "json"))
    assert len(template.encode()) > TEMPLATE_BODY_LIMIT  # the agent travels inside: never inline
    url = queue_template_upload(stubbed, template, new_bucket=True)
    params = template_parameters(cfg)
    assert params["AgentSource"] == "template" and "AgentWheelS3Path" not in params
    cfn = stubbed("cloudformation")
    cfn.add_response("create_stack", {"StackId": STACK_ID}, {
        "StackName": NAME, "TemplateURL": url, "Capabilities": ["CAPABILITY_IAM"],
        "OnFailure": "ROLLBACK", "Tags": stack_tags({"team": "ml"}),
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()]})
    cfn.add_response("describe_stacks", {"Stacks": [stack("CREATE_COMPLETE", Outputs=[
        {"OutputKey": "KeyBucketName", "OutputValue": BUCKET},
        {"OutputKey": "ClusterMasterPublicDNS", "OutputValue": "ec2-203-0-113-9.compute-1.amazonaws.com"}])]},
        {"StackName": NAME})
    cfn.add_response("describe_stack_events", {"StackEvents": [
        event(2, NAME, "CREATE_COMPLETE"), event(1, "ClusterMaster", "CREATE_COMPLETE", physical=MASTER),
        event(0, NAME, "CREATE_IN_PROGRESS", "User Initiated")]}, {"StackName": STACK_ID})
    result = run_cli("stack", "create", NAME, *FLAGS, "--yes")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "ClusterMasterPublicDNS  ec2-203-0-113-9.compute-1.amazonaws.com",
        f"KeyBucketName           {BUCKET}",
    ]
    err = result.err.splitlines()
    assert err[0].startswith("cost: 3 nodes, 3 GPUs: about $3.02/h On-Demand (us-east-1 list prices as of")
    assert "preflight: ok: key pair k; g5.xlarge offered in us-east-1b; image " + AMI in err
    assert not any(line.startswith("agent:") for line in err)  # nothing of the agent is staged apart
    assert "03:04:06  ClusterMaster          CREATE_COMPLETE" in err
    assert err[-1] == f"stack {NAME}: CREATE_COMPLETE"


def test_create_from_an_index_passes_the_pinned_package_and_stages_the_same_template(
        stubbed: Any, run_cli: Any) -> None:
    """--agent-source index changes parameter values only: the template (agent inside) is staged all the same."""
    _queue_preflight(stubbed)
    cfg = _config(agent_source="index", agent_package=PINNED, agent_index_url="https://mirror.example.com/simple")
    url = queue_template_upload(stubbed, compact(render(cfg, "json")), new_bucket=False)
    params = template_parameters(cfg)
    assert (params["AgentSource"], params["AgentPackage"], params["AgentIndexUrl"]) == (
        "index", PINNED, "https://mirror.example.com/simple")
    stubbed("cloudformation").add_response("create_stack", {"StackId": STACK_ID}, {
        "StackName": NAME, "TemplateURL": url, "Capabilities": ["CAPABILITY_IAM"],
        "OnFailure": "ROLLBACK", "Tags": stack_tags({"team": "ml"}),
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()]})
    result = run_cli("stack", "create", NAME, *FLAGS, "--agent-source", "index", "--agent-package", PINNED,
                     "--agent-index-url", "https://mirror.example.com/simple", "--yes", "--no-wait")
    assert result.code == 0, result.err
    assert result.err.splitlines()[-2:] == [f"creating stack {NAME} ({STACK_ID})",
                                            f"follow it with: cfn-chainermn stack watch {NAME}"]


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
def test_create_of_an_existing_stack_stops_before_preflight_and_staging(stubbed: Any, run_cli: Any, status: str,
                                                                       advice: str) -> None:
    stubbed("cloudformation").add_response("describe_stacks", {"Stacks": [stack(status, Tags=OWN)]},
                                           {"StackName": NAME})
    # Nothing else is queued: any EC2, SSM, STS or S3 call would fail the test as an unexpected call.
    result = run_cli("stack", "create", NAME, *FLAGS, "--yes")
    assert result.code == 3, result.err  # a refused stack operation
    sep = " " if advice == DELETE_IT else "; "
    assert result.err.splitlines()[-1] == f"error: stack {NAME} already exists ({status}){sep}{advice}"
    assert "preflight" not in result.err


def test_rollback_names_the_first_failed_resource_and_shows_its_agent_log(stubbed: Any, run_cli: Any) -> None:
    _queue_preflight(stubbed)
    cfg = _config()
    queue_template_upload(stubbed, compact(render(cfg, "json")), new_bucket=False)
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
    s3.add_response("get_object", {"Body": body(log)}, {"Bucket": BUCKET, "Key": f"logs/{MASTER}/agent.log"})
    cfn.add_response("describe_stacks", {"Stacks": [stack("ROLLBACK_COMPLETE")]}, {"StackName": NAME})
    cfn.add_response("describe_stack_events", {"StackEvents": [
        event(5, NAME, "ROLLBACK_COMPLETE"), event(4, NAME, "ROLLBACK_IN_PROGRESS")]}, {"StackName": STACK_ID})
    result = run_cli("stack", "create", NAME, *FLAGS, "--yes")
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
