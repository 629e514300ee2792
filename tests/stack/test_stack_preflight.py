"""Preflight against botocore Stubber: the look-ups it makes, and every problem reported at once."""

from __future__ import annotations

from typing import Any

import pytest
from stack_helpers import described_types

from cfn_chainermn.config.model import build
from cfn_chainermn.errors import PreflightError
from cfn_chainermn.stack import preflight

VPC, SUBNET, OTHER_VPC = "vpc-0123456789abcdef0", "subnet-0123456789abcdef0", "vpc-0fedcba9876543210"
EFS, SG = "fs-0123456789abcdef0", "sg-0123456789abcdef0"
AMI = "ami-0123456789abcdef0"
OWN_PARAMETER = "/my-team/images/chainer-current"
# What `ami build` tags its images with (ami.tags), as DescribeImages returns them.
BUILT = [{"Key": "cfn-chainermn:ami-profile", "Value": "current"}, {"Key": "cfn-chainermn:cuda", "Value": "11.0"}]


def _offerings(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    return {"InstanceTypeOfferings": [{"InstanceType": t, "LocationType": "availability-zone", "Location": az}
                                      for t, az in pairs]}


def _quota(value: float, code: str) -> dict[str, Any]:
    return {"Quota": {"ServiceCode": "ec2", "QuotaCode": code, "Value": value}}


def test_new_network_picks_an_az_that_offers_every_type(stubbed: Any) -> None:
    # V100 needs an image of one's own (the default one cannot drive it): here named by an SSM parameter
    cfg = build({"name": "demo", "key_name": "k", "ssh_cidr": "203.0.113.7/32", "instance_type": "p3.16xlarge",
                 "worker_instance_type": "p3.8xlarge", "workers": 3, "spot_workers": True,
                 "ami_ssm_parameter": OWN_PARAMETER}, for_stack=True)
    ec2, sq, ssm = stubbed("ec2"), stubbed("service-quotas"), stubbed("ssm")
    ec2.add_response("describe_key_pairs", {"KeyPairs": [{"KeyName": "k"}]}, {"KeyNames": ["k"]})
    ec2.add_response("describe_instance_type_offerings", _offerings([
        ("p3.16xlarge", "us-east-1a"), ("p3.16xlarge", "us-east-1d"), ("p3.8xlarge", "us-east-1d")]), {
        "LocationType": "availability-zone",
        "Filters": [{"Name": "instance-type", "Values": ["p3.16xlarge", "p3.8xlarge"]}]})
    for t in ("p3.16xlarge", "p3.8xlarge"):  # one call per type (this account's EC2 still knows p3)
        ec2.add_response("describe_instance_types", described_types(t), {"InstanceTypes": [t]})
    # master On-Demand P (64 vCPUs); workers Spot P (3 x 32); the On-Demand quota was never
    # adjusted, so its AWS default is read instead.
    sq.add_client_error("get_service_quota", "NoSuchResourceException", "no applied value",
                        expected_params={"ServiceCode": "ec2", "QuotaCode": "L-417A185B"})
    sq.add_response("get_aws_default_service_quota", _quota(64, "L-417A185B"),
                    {"ServiceCode": "ec2", "QuotaCode": "L-417A185B"})
    sq.add_response("get_service_quota", _quota(96, "L-7212CCBC"), {"ServiceCode": "ec2", "QuotaCode": "L-7212CCBC"})
    ssm.add_response("get_parameter", {"Parameter": {"Name": OWN_PARAMETER, "Value": AMI}}, {"Name": OWN_PARAMETER})
    ec2.add_response("describe_images", {"Images": [{"ImageId": AMI, "Tags": BUILT}]}, {"ImageIds": [AMI]})
    result = preflight.run(stubbed, cfg)
    assert (result.availability_zone, result.image_id, result.problems, result.warnings) == (
        "us-east-1d", AMI, [], [])


def test_every_problem_is_reported_together_with_the_numbers(stubbed: Any) -> None:
    cfg = build({"name": "demo", "key_name": "missing", "ssh_cidr": "203.0.113.7/32", "instance_type": "p3.16xlarge",
                 "workers": 2, "ami": AMI, "network": {"vpc_id": VPC, "subnet_id": SUBNET},
                 "efs": {"mode": "existing", "file_system_id": EFS, "security_group_id": SG}}, for_stack=True)
    ec2, sq, efs = stubbed("ec2"), stubbed("service-quotas"), stubbed("efs")
    ec2.add_client_error("describe_key_pairs", "InvalidKeyPair.NotFound", "The key pair 'missing' does not exist")
    ec2.add_response("describe_vpcs", {"Vpcs": [{"VpcId": VPC, "CidrBlock": "10.0.0.0/16"}]}, {"VpcIds": [VPC]})
    ec2.add_response("describe_subnets", {"Subnets": [{"SubnetId": SUBNET, "VpcId": OTHER_VPC,
                                                       "AvailabilityZone": "us-east-1e"}]}, {"SubnetIds": [SUBNET]})
    ec2.add_response("describe_instance_type_offerings", _offerings([("p3.16xlarge", "us-east-1a")]), None)
    ec2.add_response("describe_instance_types", described_types("p3.16xlarge"), {"InstanceTypes": ["p3.16xlarge"]})
    sq.add_response("get_service_quota", _quota(64, "L-417A185B"), {"ServiceCode": "ec2", "QuotaCode": "L-417A185B"})
    efs.add_response("describe_file_systems", {"FileSystems": [{
        "OwnerId": "1", "CreationToken": "t", "FileSystemId": EFS, "CreationTime": "2026-01-01T00:00:00Z",
        "LifeCycleState": "available", "NumberOfMountTargets": 1, "SizeInBytes": {"Value": 0},
        "PerformanceMode": "generalPurpose", "Tags": []}]}, {"FileSystemId": EFS})
    efs.add_response("describe_mount_targets", {"MountTargets": [{
        "MountTargetId": "fsmt-0123456789abcdef0", "FileSystemId": EFS, "SubnetId": "subnet-0aaaaaaaaaaaaaaaa",
        "VpcId": VPC,
        "LifeCycleState": "available", "AvailabilityZoneName": "us-east-1a"}]}, {"FileSystemId": EFS})
    ec2.add_response("describe_security_groups", {"SecurityGroups": [{"GroupId": SG, "VpcId": OTHER_VPC}]},
                     {"GroupIds": [SG]})
    ec2.add_client_error("describe_images", "InvalidAMIID.NotFound", f"The image id '[{AMI}]' does not exist",
                         expected_params={"ImageIds": [AMI]})
    with pytest.raises(PreflightError) as info:
        preflight.run(stubbed, cfg)
    assert str(info.value).splitlines() == [
        "key_name: key pair 'missing' does not exist in us-east-1; create or import it there (aws ec2 "
        "import-key-pair) or give another --key-name",
        f"network.subnet_id: {SUBNET} is in {OTHER_VPC}, not in network.vpc_id {VPC}; give a subnet of {VPC}",
        "instance_type: p3.16xlarge not offered in us-east-1e; AZs offering all of them: us-east-1a (give --az, "
        "or a subnet in one of them)",
        "quota: the cluster needs 192 vCPUs of Running On-Demand P instances (L-417A185B) but the quota in "
        "us-east-1 is 64; request an increase in the Service Quotas console, or use fewer or smaller instances",
        f"efs.file_system_id: {EFS} has no mount target in us-east-1e of {VPC} (it has: us-east-1a); add one "
        "there or put the cluster in one of those AZs",
        f"efs.security_group_id: {SG} is in {OTHER_VPC}, not {VPC}; give a group of the cluster's VPC",
        f"ami: image {AMI} does not exist in us-east-1; give an AMI of this region",
    ]
    assert info.value.exit_code == 4


def test_an_unreadable_quota_warns_instead_of_blocking(stubbed: Any) -> None:
    cfg = build({"name": "demo", "key_name": "k", "ssh_cidr": "203.0.113.7/32", "instance_type": "g5.xlarge",
                 "workers": 0, "ami": AMI, "network": {"availability_zone": "us-east-1b"}}, for_stack=True)
    ec2, sq = stubbed("ec2"), stubbed("service-quotas")
    ec2.add_response("describe_key_pairs", {"KeyPairs": [{"KeyName": "k"}]}, None)
    ec2.add_response("describe_instance_type_offerings", _offerings([("g5.xlarge", "us-east-1b")]), None)
    ec2.add_client_error("describe_instance_types", "UnauthorizedOperation", "not allowed")
    sq.add_client_error("get_service_quota", "AccessDeniedException", "not allowed")
    ec2.add_response("describe_images", {"Images": [{"ImageId": AMI}]}, None)
    result = preflight.run(stubbed, cfg)
    assert result.availability_zone == "us-east-1b"
    assert result.problems == []
    assert result.warnings == [
        "could not describe g5.xlarge (UnauthorizedOperation: not allowed); this release's table is used instead",
        "could not read the quota Running On-Demand G and VT instances (L-DB2E81BA): "
        "AccessDeniedException: not allowed; the cluster needs 4 vCPUs of it",
        f"image {AMI} was not built by `cfn-chainermn ami build`: it has no Chainer stack, so the cluster comes "
        "up but `job submit` of a Chainer script fails; build one and give --ami"]


@pytest.mark.parametrize(("master", "worker", "workers", "expected"), [
    ("p3.2xlarge", "", 2, []),
    ("p4d.24xlarge", "g4dn.xlarge", 1, []),
    ("g5.xlarge", "", 1, ["the A10G GPUs (sm_86) of g5.xlarge need CUDA 11.1 or newer"]),
    ("p3.2xlarge", "g6.xlarge", 1, ["the L4 GPUs (sm_89) of g6.xlarge need CUDA 11.8 or newer"]),
    ("p3.2xlarge", "g6.xlarge", 0, []),  # no workers: the worker type never runs
    ("p5.48xlarge", "g5.xlarge", 1, ["the H100 GPUs (sm_90) of p5.48xlarge need CUDA 11.8 or newer",
                                     "the A10G GPUs (sm_86) of g5.xlarge need CUDA 11.1 or newer"]),
])
def test_an_image_whose_cuda_cannot_drive_the_gpus_is_refused(master: str, worker: str, workers: int,
                                                              expected: list[str]) -> None:
    cfg = build({"name": "demo", "instance_type": master, "worker_instance_type": worker, "workers": workers,
                 "ami": AMI})
    problems = preflight.image_problems(AMI, {"ImageId": AMI, "Tags": BUILT}, cfg)
    assert problems == [f"ami: image {AMI} (current profile) has CUDA 11.0, but {gap}; give --ami of an image with a "
                        "newer CUDA, or choose a type it suits (p3, p3dn, p4d, p4de, g4dn)" for gap in expected]


def test_v100_on_an_image_with_the_open_driver_is_refused() -> None:
    """The Deep Learning Base OSS AMI (no `ami build` tags) cannot drive p3's V100; a built image can."""
    cfg = build({"name": "demo", "instance_type": "p3.16xlarge", "workers": 1, "worker_instance_type": "g5.xlarge"})
    assert preflight.image_problems(AMI, {"ImageId": AMI}, cfg) == [
        f"ami_ssm_parameter: image {AMI} cannot drive p3.16xlarge: V100 (sm_70) needs NVIDIA's proprietary driver, "
        "branch 580 or older: the open kernel modules run Turing and newer only, and newer branches dropped it; "
        "build an image with that driver (`cfn-chainermn ami build --profile current`, driver 535) and give --ami"]
    assert preflight.image_problems(AMI, {"ImageId": AMI, "Tags": BUILT}, cfg) == [
        f"ami_ssm_parameter: image {AMI} (current profile) has CUDA 11.0, but the A10G GPUs (sm_86) of g5.xlarge "
        "need CUDA 11.1 or newer; give --ami of an image with a newer CUDA, or choose a type it suits (p3, p3dn, "
        "p4d, p4de, g4dn)"]


def test_efa_is_judged_by_what_ec2_says(stubbed: Any) -> None:
    """EFA on a type EC2 says has none is refused; a card count the table lacks and the public-address
    catch of several interfaces in an existing subnet are named."""
    cfg = build({"name": "demo", "instance_type": "p5.48xlarge", "efa": "on", "workers": 0,
                 "network": {"vpc_id": "vpc-0123456789abcdef0", "subnet_id": "subnet-0123456789abcdef0"}})
    ec2 = stubbed("ec2")
    described = described_types("p5.48xlarge", cards=16)
    ec2.add_response("describe_instance_types", described, {"InstanceTypes": ["p5.48xlarge"]})
    r = preflight.Result()
    preflight.check_instance_types(stubbed, cfg, r)
    assert r.problems == [] and r.types["p5.48xlarge"].network_cards == 16
    assert r.warnings == [
        "p5.48xlarge: EC2 says EFA interfaces 16, the table 32: the template attaches the table's count",
        "efa: p5.48xlarge gets an EFA interface on each of its 16 network cards, and AWS gives no public address to "
        "an instance with several interfaces: subnet-0123456789abcdef0 needs a route out without one (a NAT "
        "gateway), or set efa to off"]
    described["InstanceTypes"][0]["NetworkInfo"] = {"EfaSupported": False}
    ec2.add_response("describe_instance_types", described, {"InstanceTypes": ["p5.48xlarge"]})
    r = preflight.Result()
    preflight.check_instance_types(stubbed, cfg, r)
    assert r.problems == ["efa: p5.48xlarge has no EFA (DescribeInstanceTypes); set efa to auto or off, or choose a "
                          "type with EFA"]


def test_an_image_whose_cuda_is_too_old_stops_the_create_with_exit_4(stubbed: Any) -> None:
    """The whole run: a `current` image (CUDA 11.0) for p5's H100 is a problem, not a warning."""
    cfg = build({"name": "demo", "key_name": "k", "ssh_cidr": "203.0.113.7/32", "instance_type": "p5.48xlarge",
                 "workers": 0, "ami": AMI, "network": {"availability_zone": "us-east-1b"}}, for_stack=True)
    ec2, sq = stubbed("ec2"), stubbed("service-quotas")
    ec2.add_response("describe_key_pairs", {"KeyPairs": [{"KeyName": "k"}]}, None)
    ec2.add_response("describe_instance_type_offerings", _offerings([("p5.48xlarge", "us-east-1b")]), None)
    ec2.add_response("describe_instance_types", described_types("p5.48xlarge"), {"InstanceTypes": ["p5.48xlarge"]})
    sq.add_response("get_service_quota", _quota(192, "L-417A185B"), None)
    ec2.add_response("describe_images", {"Images": [{"ImageId": AMI, "Tags": BUILT}]}, {"ImageIds": [AMI]})
    with pytest.raises(PreflightError) as info:
        preflight.run(stubbed, cfg)
    assert info.value.exit_code == 4
    assert str(info.value).splitlines() == [
        f"ami: image {AMI} (current profile) has CUDA 11.0, but the H100 GPUs (sm_90) of p5.48xlarge need CUDA 11.8 "
        "or newer; give --ami of an image with a newer CUDA, or choose a type it suits (p3, p3dn, p4d, p4de, g4dn)"]


def test_a_type_ec2_no_longer_knows_is_named(stubbed: Any) -> None:
    """AWS stopped describing p3 in 2026: that type is a problem line of its own; the other type is still read."""
    cfg = build({"name": "demo", "instance_type": "p3.16xlarge", "worker_instance_type": "p4d.24xlarge",
                 "workers": 2, "ami": AMI})
    ec2 = stubbed("ec2")
    ec2.add_client_error("describe_instance_types", "InvalidInstanceType",
                         "The following supplied instance types do not exist: [p3.16xlarge]",
                         expected_params={"InstanceTypes": ["p3.16xlarge"]})
    ec2.add_response("describe_instance_types", described_types("p4d.24xlarge"), {"InstanceTypes": ["p4d.24xlarge"]})
    r = preflight.Result()
    preflight.check_instance_types(stubbed, cfg, r)
    assert r.problems == ["instance_type: EC2 in us-east-1 does not know p3.16xlarge (AWS no longer offers it); "
                          "choose another type (docs/gpus.md)"]
    assert r.warnings == [] and r.types["p4d.24xlarge"].network_cards == 4
