"""The CLI against moto on 127.0.0.1: create the released template's stack, scale it, delete it.

Assertions are on what moto models (feasibility-aws.md §5): instances and their tags, the
Auto Scaling group's size, buckets and objects. moto gives CloudFormation instances no public
IP, so ClusterMasterPublicDNS is absent here; the other outputs are checked against the
resources they name.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from stack_helpers import PINNED, STAGING, arrange_default_subnet, cluster_client

from cfn_chainermn import __version__
from cfn_chainermn.config.model import DEFAULT_AMI_SSM_PARAMETER, ClusterConfig
from cfn_chainermn.names import CLUSTER_TAG, ROLE_TAG
from cfn_chainermn.template import render

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


def _running(states: dict[str, str]) -> int:
    return sum(1 for s in states.values() if s == "running")


def test_create_scale_delete_against_moto(emulator: Any, run_cli: Any) -> None:
    ec2, s3, asg, cfn = (cluster_client(s) for s in ("ec2", "s3", "autoscaling", "cloudformation"))
    vpc, subnet = arrange_default_subnet(ec2)

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

    # The template, agent inside, was staged in the encrypted, private staging bucket, and the
    # stack runs what was staged there (CloudFormation read its TemplateURL).
    described = cfn.describe_stacks(StackName=NAME)["Stacks"][0]
    params = {p["ParameterKey"]: p["ParameterValue"] for p in described["Parameters"]}
    assert (params["AgentSource"], params["AgentPackage"]) == ("template", "") and "AgentWheelS3Path" not in params
    [(key, staged)] = _staged_templates(s3)
    assert key.endswith(f"/{NAME}.json") and len(staged) > 51_200  # over CreateStack's inline limit
    assert _resources(staged) == _resources(cfn.get_template(StackName=NAME)["TemplateBody"])
    assert s3.get_public_access_block(Bucket=STAGING)["PublicAccessBlockConfiguration"]["BlockPublicPolicy"]
    rules = s3.get_bucket_encryption(Bucket=STAGING)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    # staged templates expire: CloudFormation has read them, and nodes read theirs with GetTemplate
    lifecycle = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=STAGING)["Rules"]}
    assert lifecycle["templates-expire"]["Expiration"] == {"Days": 7}
    assert lifecycle["templates-expire"]["Filter"] == {"Prefix": "templates/"}
    assert {"Key": "cfn-chainermn:version", "Value": __version__} in described["Tags"]

    # The stack runs the released template (the config only changes parameter values): the
    # default config's, which tests/template/test_template_golden.py holds templates/ to.
    released = json.loads(render(ClusterConfig(), "json"))
    running = _template(cfn.get_template(StackName=NAME)["TemplateBody"])
    assert running["Resources"] == released["Resources"] and running["Outputs"] == released["Outputs"]

    status = run_cli("stack", "status", NAME)
    assert status.code == 0, status.err
    assert "nodes    0 of 3 ready" in status.out  # no agent runs in moto: present, not ready
    assert f"  master  {outputs['ClusterMasterInstanceId']}" in status.out

    # moto gives the master no public name: the hostfile still works (it reads, never logs in);
    # no node is ready, so it is empty and says why on stderr.
    hosts = run_cli("hostfile", NAME)
    assert (hosts.code, hosts.out) == (0, ""), hosts.err
    assert hosts.err.splitlines()[0] == f"using stack {NAME} in us-east-1"  # the --region default of this test
    assert hosts.err.splitlines()[1].startswith("note: 3 nodes not ready yet, left out (i-") and "--wait N" in hosts.err

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

    deleted = run_cli("stack", "delete", NAME, "--yes")
    assert deleted.code == 0, deleted.err
    assert f"emptied bucket {bucket}: 5 object versions removed" in deleted.err
    assert deleted.err.splitlines()[-1] == f"stack {NAME}: DELETE_COMPLETE"
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    states = {**_instances(ec2, "master"), **_instances(ec2, "worker")}
    assert len(states) >= 6 and set(states.values()) == {"terminated"}
    assert asg.describe_auto_scaling_groups()["AutoScalingGroups"] == []
    gone = run_cli("stack", "status", NAME)
    assert (gone.code, gone.err) == (3, f"error: stack {NAME} not found; `cfn-chainermn stack list` shows yours\n")


def test_an_index_stack_and_its_update_stage_each_template_into_the_same_bucket(
        emulator: Any, run_cli: Any) -> None:
    """The second staging finds the bucket (head_bucket naming this account as its owner, on real S3 calls)."""
    ec2, s3, cfn = (cluster_client(s) for s in ("ec2", "s3", "cloudformation"))
    vpc, subnet = arrange_default_subnet(ec2)
    created = run_cli("stack", "create", NAME, "--key-name", "demo-key", "--ssh-cidr", "203.0.113.7/32",
                      "--instance-type", "g5.xlarge", "--workers", "0", "--vpc-id", vpc, "--subnet-id", subnet,
                      "--agent-source", "index", "--agent-package", PINNED, "--yes")
    assert created.code == 0, created.err
    assert _parameters(cfn)[:2] == ("index", PINNED)

    # moto's DescribeStacks gives an SSM-typed parameter's resolved AMI id as its ParameterValue
    # (moto/cloudformation/parsing.py load_parameters; AWS gives the path there, the id as
    # ResolvedValue), which an update would take for the path: the path is given again here.
    updated = run_cli("stack", "update", NAME, "--workers", "1", "--ami-ssm-parameter", DEFAULT_AMI_SSM_PARAMETER,
                      "--yes")
    assert updated.code == 0, updated.err
    assert _parameters(cfn) == ("index", PINNED, "1")  # the stack's agent settings carried over
    (key1, first), (key2, second) = _staged_templates(s3)
    assert key1 != key2 and key1.endswith(f"/{NAME}.json") and key2.endswith(f"/{NAME}.json")
    assert _resources(first) == _resources(second)  # settings are parameter values only
    assert run_cli("stack", "delete", NAME, "--yes").code == 0


def _parameters(cfn: Any) -> tuple[str, str, str]:
    """The stack's (AgentSource, AgentPackage, WorkerCount)."""
    described = cfn.describe_stacks(StackName=NAME)["Stacks"][0]
    params = {p["ParameterKey"]: p["ParameterValue"] for p in described["Parameters"]}
    return params["AgentSource"], params["AgentPackage"], params["WorkerCount"]


def _staged_templates(s3: Any) -> list[tuple[str, str]]:
    """(key, text) of every template in the staging bucket (templates/<hash>/<stack>.json)."""
    listed = s3.list_objects_v2(Bucket=STAGING, Prefix="templates/").get("Contents", [])
    return [(o["Key"], s3.get_object(Bucket=STAGING, Key=o["Key"])["Body"].read().decode()) for o in listed]


def _template(body: Any) -> dict[str, Any]:
    """GetTemplate's TemplateBody as data (moto gives a str or the parsed mapping)."""
    return json.loads(body) if isinstance(body, str) else dict(body)


def _resources(body: Any) -> Any:
    return _template(body)["Resources"]
