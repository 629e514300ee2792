"""The template on moto (a server on 127.0.0.1): the stack reaches CREATE_COMPLETE and the
resources moto models carry the template's settings. moto ignores much (placement groups,
instance metadata options, public DNS in a custom subnet: see research/feasibility-aws.md §5),
so this asserts only on what moto really models.

moto resolves the ImageSsmParameter Default through its SSM backend, which lacks the Deep
Learning AMI's public parameter and refuses names under /aws/ through the API; the config's
`ami_ssm_parameter` (the Default) therefore names a public parameter moto ships."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from cfn_chainermn.config.model import build
from cfn_chainermn.names import CLUSTER_TAG, ROLE_TAG
from cfn_chainermn.template import render

MOTO_AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"


@pytest.mark.parametrize("fmt", ["compact", "yaml"])  # the YAML as released: moto must parse its long form
def test_stack_create_complete_on_moto(moto: Any, fmt: str) -> None:
    kw = {"endpoint_url": moto.url, "region_name": "us-east-1"}
    ec2, cfn = boto3.client("ec2", **kw), boto3.client("cloudformation", **kw)
    ec2.create_key_pair(KeyName="k")
    cfg = build({"workers": 2, "ami_ssm_parameter": MOTO_AMI_PARAMETER})
    cfn.create_stack(StackName="demo", TemplateBody=render(cfg, fmt), Capabilities=["CAPABILITY_IAM"],
                     Parameters=[{"ParameterKey": "KeyName", "ParameterValue": "k"},
                                 {"ParameterKey": "SshCidr", "ParameterValue": "203.0.113.7/32"}])
    cfn.get_waiter("stack_create_complete").wait(StackName="demo", WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    stack = cfn.describe_stacks(StackName="demo")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}

    nodes = [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
    roles = sorted({t["Key"]: t["Value"] for t in i["Tags"]}[ROLE_TAG] for i in nodes)
    assert roles == ["master", "worker", "worker"]
    assert all({t["Key"]: t["Value"] for t in i["Tags"]}[CLUSTER_TAG] == "demo" for i in nodes)
    assert {i["InstanceType"] for i in nodes} == {"g6.xlarge"}
    master = next(i for i in nodes if i["InstanceId"] == outputs["ClusterMasterInstanceId"])
    assert master["PrivateIpAddress"] == outputs["ClusterMasterPrivateIP"]
    assert master["KeyName"] == "k"

    asg = boto3.client("autoscaling", **kw).describe_auto_scaling_groups(
        AutoScalingGroupNames=[outputs["WorkerGroupName"]])["AutoScalingGroups"][0]
    assert (asg["MinSize"], asg["MaxSize"], asg["DesiredCapacity"]) == (0, 2, 2)
    lt = ec2.describe_launch_template_versions(LaunchTemplateId=asg["LaunchTemplate"]["LaunchTemplateId"])
    data = lt["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["BlockDeviceMappings"][0]["Ebs"]["Encrypted"] is True

    s3 = boto3.client("s3", **kw)
    enc = s3.get_bucket_encryption(Bucket=outputs["KeyBucketName"])["ServerSideEncryptionConfiguration"]
    assert enc["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    efs = boto3.client("efs", **kw).describe_file_systems(FileSystemId=outputs["EfsFileSystemId"])
    assert efs["FileSystems"][0]["Encrypted"] is True

    groups = {g["GroupName"]: g for g in ec2.describe_security_groups()["SecurityGroups"]}
    ssh = next(g for name, g in groups.items() if "MasterSshSecurityGroup" in name)
    assert [(p["FromPort"], p["IpRanges"][0]["CidrIp"]) for p in ssh["IpPermissions"]] == [(22, "203.0.113.7/32")]
