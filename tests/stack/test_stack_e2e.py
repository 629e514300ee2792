"""The CLI against moto on 127.0.0.1: create the released template's stack, scale it, delete it.

Assertions are on what moto models (feasibility-aws.md §5): instances and their tags, the
Auto Scaling group's size, buckets and objects. moto gives CloudFormation instances no public
IP, so ClusterMasterPublicDNS is absent here; the other outputs are checked against the
resources they name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from stack_helpers import cluster_client

from cfn_chainermn import __version__
from cfn_chainermn.names import CLUSTER_TAG, ROLE_TAG

NAME = "e2e"
# moto says so for AWS::EC2::PlacementGroup and AWS::S3::BucketPolicy (feasibility-aws.md §5).
pytestmark = pytest.mark.filterwarnings("ignore:Tried to parse .* not supported by moto:UserWarning")


def _instances(ec2: Any, role: str) -> dict[str, str]:
    """Instance id -> state of this stack's nodes with `role`."""
    found: dict[str, str] = {}
    for r in ec2.describe_instances(Filters=[{"Name": f"tag:{CLUSTER_TAG}", "Values": [NAME]},
                                             {"Name": f"tag:{ROLE_TAG}", "Values": [role]}])["Reservations"]:
        for i in r["Instances"]:
            found[i["InstanceId"]] = i["State"]["Name"]
    return found


def _arrange(ec2: Any) -> tuple[str, str]:
    """A key pair, and moto's default VPC with its us-east-1a subnet (moto cannot delete a stack's
    new VPC: its SubnetRouteTableAssociation makes DeleteStack fail)."""
    ec2.create_key_pair(KeyName="demo-key")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
    return vpc, next(s["SubnetId"] for s in subnets if s["AvailabilityZone"] == "us-east-1a")


def _running(states: dict[str, str]) -> int:
    return sum(1 for s in states.values() if s == "running")


def test_create_scale_delete_against_moto(emulator: Any, run_cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    ec2, s3, asg, cfn = (cluster_client(s) for s in ("ec2", "s3", "autoscaling", "cloudformation"))
    vpc, subnet = _arrange(ec2)

    created = run_cli("stack", "create", NAME, "--key-name", "demo-key", "--ssh-cidr", "203.0.113.7/32",
                      "--instance-type", "g5.xlarge", "--workers", "2", "--vpc-id", vpc, "--subnet-id", subnet,
                      "--tag", "team=ml", "--yes")
    assert created.code == 0, created.err
    err = created.err.splitlines()
    assert err[0].startswith("cost: 3 nodes, 3 GPUs: about $3.02/h")
    assert f"preflight: ok: key pair demo-key; g5.xlarge offered in us-east-1a; image {emulator.image}" in err
    assert any(line.endswith(f"{NAME:<22} CREATE_IN_PROGRESS             User Initiated") for line in err)
    assert err[-1] == f"stack {NAME}: CREATE_COMPLETE"
    outputs = dict(line.split(None, 1) for line in created.out.splitlines())

    # The outputs name real resources: the master is running with its tags, the bucket exists.
    masters = _instances(ec2, "master")
    assert masters == {outputs["ClusterMasterInstanceId"]: "running"}
    master = ec2.describe_instances(InstanceIds=list(masters))["Reservations"][0]["Instances"][0]
    assert (master["InstanceType"], master["KeyName"], master["SubnetId"], master["ImageId"]) == (
        "g5.xlarge", "demo-key", subnet, emulator.image)
    bucket = outputs["KeyBucketName"]
    s3.head_bucket(Bucket=bucket)
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=[outputs["WorkerGroupName"]])["AutoScalingGroups"][0]
    assert group["DesiredCapacity"] == 2 and _running(_instances(ec2, "worker")) == 2

    # The agent wheel was staged in the encrypted, private staging bucket and handed to the stack.
    described = cfn.describe_stacks(StackName=NAME)["Stacks"][0]
    params = {p["ParameterKey"]: p["ParameterValue"] for p in described["Parameters"]}
    staging, key = params["AgentWheelS3Path"].split("/", 1)
    assert staging == "cfn-chainermn-staging-123456789012-us-east-1" and key.endswith("-py3-none-any.whl")
    assert s3.head_object(Bucket=staging, Key=key)["ContentLength"] > 10_000
    assert s3.get_public_access_block(Bucket=staging)["PublicAccessBlockConfiguration"]["BlockPublicPolicy"]
    rules = s3.get_bucket_encryption(Bucket=staging)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    # staged templates expire (CloudFormation has read them); the agent wheels stay for later boots
    lifecycle = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=staging)["Rules"]}
    assert lifecycle["templates-expire"]["Expiration"] == {"Days": 7}
    assert lifecycle["templates-expire"]["Filter"] == {"Prefix": "templates/"}
    assert not any("agent/" in str(r.get("Filter")) for r in lifecycle.values())
    assert {"Key": "cfn-chainermn:version", "Value": __version__} in described["Tags"]

    # The stack runs the released template (the config only changes parameter values).
    released = json.loads((Path(__file__).parents[2] / "templates" / "chainermn-cluster.json").read_text())
    body = cfn.get_template(StackName=NAME)["TemplateBody"]
    running = json.loads(body) if isinstance(body, str) else body
    assert running["Resources"] == released["Resources"] and running["Outputs"] == released["Outputs"]

    status = run_cli("stack", "status", NAME)
    assert status.code == 0, status.err
    assert "nodes    0 of 3 ready" in status.out  # no agent runs in moto: present, not ready
    assert f"  master  {outputs['ClusterMasterInstanceId']}" in status.out

    # moto gives the master no public name: the hostfile still works (it reads, never logs in);
    # no node is ready, so it is empty and says why on stderr.
    hosts = run_cli("hostfile", NAME)
    assert (hosts.code, hosts.out) == (0, ""), hosts.err
    assert hosts.err.startswith("note: 3 nodes not ready yet, left out (i-") and "--wait N" in hosts.err

    shown = run_cli("stack", "outputs", NAME, "--output", "json")
    assert shown.code == 0 and json.loads(shown.out)["KeyBucketName"] == bucket and shown.err == ""
    events = run_cli("stack", "events", NAME)
    assert events.code == 0 and events.out.splitlines()[-1].split()[1:] == [NAME, "CREATE_COMPLETE"]
    listed = run_cli("stack", "list", "--output", "json")
    assert [(r["name"], r["state"], r["workers"]) for r in json.loads(listed.out)] == [(NAME, "complete", "2")]

    scaled = run_cli("stack", "scale", NAME, "--workers", "3", "--yes")
    assert scaled.code == 0, scaled.err
    assert scaled.err.splitlines()[-1] == f"stack {NAME}: UPDATE_COMPLETE"
    groups = asg.describe_auto_scaling_groups()["AutoScalingGroups"]
    assert [g["DesiredCapacity"] for g in groups] == [3]
    assert _running(_instances(ec2, "worker")) == 3
    assert _instances(ec2, "master") == masters  # scaling left the master alone

    # Nodes write into the key bucket; versioning (set by the template, ignored by moto) is on.
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for n in range(3):
        s3.put_object(Bucket=bucket, Key=f"logs/{master['InstanceId']}/agent.log", Body=f"boot {n}\n".encode())
    s3.put_object(Bucket=bucket, Key="cluster-key/id_ed25519.pub", Body=b"ssh-ed25519 AAAA")
    s3.delete_object(Bucket=bucket, Key="cluster-key/id_ed25519.pub")  # leaves a delete marker

    # A wheel an earlier stack left behind; with no grace period both it and this stack's go.
    s3.put_object(Bucket=staging, Key="agent/0123456789abcdef/cfn_chainermn-0.0.9-py3-none-any.whl", Body=b"old")
    monkeypatch.setattr("cfn_chainermn.stack.wheel_gc.KEEP_HOURS", 0)

    deleted = run_cli("stack", "delete", NAME, "--yes")
    assert deleted.code == 0, deleted.err
    assert f"emptied bucket {bucket}: 5 object versions removed" in deleted.err
    assert deleted.err.splitlines()[-2:] == [
        f"stack {NAME}: DELETE_COMPLETE",
        f"removed 2 staged agent wheel(s) that no stack uses from s3://{staging} (0 kept: in use or staged within 0 h)"]
    assert "Contents" not in s3.list_objects_v2(Bucket=staging, Prefix="agent/")
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    states = {**_instances(ec2, "master"), **_instances(ec2, "worker")}
    assert len(states) >= 6 and set(states.values()) == {"terminated"}
    assert asg.describe_auto_scaling_groups()["AutoScalingGroups"] == []
    gone = run_cli("stack", "status", NAME)
    assert (gone.code, gone.err) == (3, f"error: stack {NAME} not found; `cfn-chainermn stack list` shows yours\n")


def test_a_template_over_the_inline_limit_goes_through_the_staging_bucket(
        emulator: Any, run_cli: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr("cfn_chainermn.stack.cfn.TEMPLATE_BODY_LIMIT", 1000)  # the real body is ~27 KB
    ec2, s3, cfn = (cluster_client(s) for s in ("ec2", "s3", "cloudformation"))
    vpc, subnet = _arrange(ec2)
    created = run_cli("stack", "create", NAME, "--key-name", "demo-key", "--ssh-cidr", "203.0.113.7/32",
                      "--instance-type", "g5.xlarge", "--workers", "0", "--vpc-id", vpc, "--subnet-id", subnet,
                      "--agent-source", "index", "--yes")
    assert created.code == 0, created.err
    staging = "cfn-chainermn-staging-123456789012-us-east-1"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=staging, Prefix="templates/")["Contents"]]
    assert len(keys) == 1 and keys[0].endswith(f"/{NAME}.json")
    uploaded = json.loads(s3.get_object(Bucket=staging, Key=keys[0])["Body"].read())
    body = cfn.get_template(StackName=NAME)["TemplateBody"]
    assert (json.loads(body) if isinstance(body, str) else body)["Resources"] == uploaded["Resources"]
    described = cfn.describe_stacks(StackName=NAME)["Stacks"][0]
    params = {p["ParameterKey"]: p["ParameterValue"] for p in described["Parameters"]}
    assert (params["AgentWheelS3Path"], params["WorkerCount"]) == ("", "0")
    assert "agent: staged" not in created.err
    assert run_cli("stack", "delete", NAME, "--yes").code == 0
