"""Checks against the account before anything is created, every problem reported at once.

A stack that fails after twenty minutes because the key pair is in another region or the vCPU
quota is 0 is the worst kind of failure; these look-ups take a second and cost nothing. The
only writes come after all of them pass. When no AZ is given for a new subnet, one that
offers every instance type is chosen here (p3 is not offered in every AZ).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from cfn_chainermn.aws import Aws, error_code, short_error
from cfn_chainermn.catalog.instance_types import INSTANCE_TYPES, VCPU_QUOTA_CODES, InstanceType, lookup
from cfn_chainermn.config.model import ClusterConfig
from cfn_chainermn.errors import PreflightError

QUOTA_NAMES = {
    ("P", False): "Running On-Demand P instances",
    ("G", False): "Running On-Demand G and VT instances",
    ("P", True): "All P Spot Instance Requests",
    ("G", True): "All G and VT Spot Instance Requests",
}


@dataclass
class Result:
    """What the checks found: problems stop the create; the rest feeds it."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    availability_zone: str = ""
    vpc_id: str = ""
    image_id: str = ""
    types: dict[str, InstanceType] = field(default_factory=dict)  # EC2's word on each type, else the table's


def _call(result: Result, what: str, missing: dict[str, str], fn: Callable[[], Any]) -> Any:
    """Run one look-up; a "not found" code becomes its problem line, any other error says so."""
    from botocore.exceptions import ClientError

    try:
        return fn()
    except ClientError as exc:
        code = error_code(exc)
        for prefix, message in missing.items():
            if code.startswith(prefix):
                result.problems.append(message)
                return None
        result.problems.append(f"{what}: could not check ({short_error(exc)})")
        return None


def vcpus_needed(cfg: ClusterConfig) -> dict[tuple[str, bool], int]:
    """vCPUs per Service Quotas class (P or G, Spot or not) for the whole cluster."""
    need: dict[tuple[str, bool], int] = {}
    master = lookup(cfg.instance_type)
    need[(master.quota_class, False)] = master.vcpus
    if cfg.workers:
        worker = lookup(cfg.worker_type)
        key = (worker.quota_class, cfg.spot_workers)
        need[key] = need.get(key, 0) + cfg.workers * worker.vcpus
    return need


def check_key_pair(aws: Aws, cfg: ClusterConfig, r: Result) -> None:
    _call(r, "key_name", {"InvalidKeyPair.NotFound": (
        f"key_name: key pair {cfg.key_name!r} does not exist in {aws.region}; create or import it there "
        "(aws ec2 import-key-pair) or give another --key-name")},
        lambda: aws.client("ec2").describe_key_pairs(KeyNames=[cfg.key_name]))


def check_network(aws: Aws, cfg: ClusterConfig, r: Result) -> None:
    """Existing VPC, subnet and route table exist and belong together; sets the AZ when a subnet fixes it."""
    n, ec2 = cfg.network, aws.client("ec2")
    r.availability_zone = n.availability_zone
    if not n.vpc_id:
        return
    vpcs = _call(r, "network.vpc_id", {"InvalidVpcID.NotFound": (
        f"network.vpc_id: {n.vpc_id} does not exist in {aws.region}; give a VPC of this region")},
        lambda: ec2.describe_vpcs(VpcIds=[n.vpc_id]))
    r.vpc_id = n.vpc_id
    if n.subnet_id:
        subnets = _call(r, "network.subnet_id", {"InvalidSubnetID.NotFound": (
            f"network.subnet_id: {n.subnet_id} does not exist in {aws.region}; give a subnet of {n.vpc_id}")},
            lambda: ec2.describe_subnets(SubnetIds=[n.subnet_id]))
        if subnets and subnets["Subnets"]:
            subnet = subnets["Subnets"][0]
            if subnet["VpcId"] != n.vpc_id:
                r.problems.append(f"network.subnet_id: {n.subnet_id} is in {subnet['VpcId']}, not in "
                                  f"network.vpc_id {n.vpc_id}; give a subnet of {n.vpc_id}")
            az = subnet["AvailabilityZone"]
            if n.availability_zone and n.availability_zone != az:
                r.problems.append(f"network.availability_zone: {n.subnet_id} is in {az}, not "
                                  f"{n.availability_zone}; drop --az or give a subnet in {n.availability_zone}")
            r.availability_zone = az
        return
    tables = _call(r, "network.route_table_id", {"InvalidRouteTableID.NotFound": (
        f"network.route_table_id: {n.route_table_id} does not exist in {aws.region}; give a route table "
        f"of {n.vpc_id}")}, lambda: ec2.describe_route_tables(RouteTableIds=[n.route_table_id]))
    if tables and tables["RouteTables"] and tables["RouteTables"][0]["VpcId"] != n.vpc_id:
        r.problems.append(f"network.route_table_id: {n.route_table_id} belongs to "
                          f"{tables['RouteTables'][0]['VpcId']}, not {n.vpc_id}; give a route table of {n.vpc_id}")
    if vpcs and vpcs["Vpcs"]:
        vpc = vpcs["Vpcs"][0]
        blocks = [a["CidrBlock"] for a in vpc.get("CidrBlockAssociationSet", [])] or [vpc["CidrBlock"]]
        subnet_net = ipaddress.IPv4Network(n.subnet_cidr)
        if not any(subnet_net.subnet_of(ipaddress.IPv4Network(b)) for b in blocks):
            r.problems.append(f"network.subnet_cidr: {n.subnet_cidr} is outside {n.vpc_id} ({', '.join(blocks)}); "
                              "give --subnet-cidr inside the VPC's range")


def check_offerings(aws: Aws, cfg: ClusterConfig, r: Result) -> None:
    """Every instance type is offered in the AZ; picks an AZ offering all of them when none is fixed."""
    from botocore.exceptions import ClientError

    types = sorted(cfg.instance_types)
    offered: dict[str, set[str]] = {}
    try:
        pages = aws.client("ec2").get_paginator("describe_instance_type_offerings").paginate(
            LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": types}])
        for page in pages:
            for o in page["InstanceTypeOfferings"]:
                offered.setdefault(o["Location"], set()).add(o["InstanceType"])
    except ClientError as exc:  # the other checks still run
        r.problems.append(f"instance_type: could not check where {', '.join(types)} are offered "
                          f"({short_error(exc)})")
        return
    complete = sorted(az for az, have in offered.items() if have >= set(types))
    if r.availability_zone:
        missing = [t for t in types if t not in offered.get(r.availability_zone, set())]
        if missing:
            where = f"AZs offering all of them: {', '.join(complete)}" if complete else "no AZ here offers all of them"
            r.problems.append(f"instance_type: {', '.join(missing)} not offered in {r.availability_zone}; {where} "
                              "(give --az, or a subnet in one of them)")
    elif complete:
        r.availability_zone = complete[0]
    else:
        r.problems.append(f"instance_type: no AZ of {aws.region} offers {' and '.join(types)} together; "
                          "choose other instance types or another --region")


def check_instance_types(aws: Aws, cfg: ClusterConfig, r: Result) -> None:
    """EC2's DescribeInstanceTypes is the source for GPUs and EFA; the table is the fallback (and
    what the template's EFA mapping holds, so a difference is named). One call per type, so a type
    EC2 no longer knows is named alone: AWS stopped describing p3 (not p3dn) in 2026 (dstack's
    gpuhunt dropped it when the API did; moto's AWS-generated type list has no p3 either)."""
    from botocore.exceptions import ClientError

    from cfn_chainermn.catalog.live import differences, from_description

    types = sorted(cfg.instance_types)
    r.types = {t: INSTANCE_TYPES[t] for t in types if t in INSTANCE_TYPES}
    ec2 = aws.client("ec2")
    for name in types:
        try:
            found = ec2.describe_instance_types(InstanceTypes=cast(Any, [name]))["InstanceTypes"]
        except ClientError as exc:
            if error_code(exc).startswith("InvalidInstanceType"):
                r.problems.append(f"instance_type: EC2 in {aws.region} does not know {name} (AWS no longer offers "
                                  "it); choose another type (docs/gpus.md)")
            else:
                r.warnings.append(f"could not describe {name} ({short_error(exc)}); this release's table is used "
                                  "instead")
            continue
        for info in found:
            live = from_description(info)
            r.types[live.name] = live
            r.warnings += [f"{gap}: the template attaches the table's count" for gap in differences(live)]
    for name in types:
        row = r.types[name]
        if cfg.efa == "on" and not row.efa:
            r.problems.append(f"efa: {name} has no EFA (DescribeInstanceTypes); set efa to auto or off, or choose "
                              "a type with EFA")
        if cfg.efa != "off" and row.network_cards > 1 and cfg.network.subnet_id:
            r.warnings.append(
                f"efa: {name} gets an EFA interface on each of its {row.network_cards} network cards, and AWS gives "
                f"no public address to an instance with several interfaces: {cfg.network.subnet_id} needs a route "
                "out without one (a NAT gateway), or set efa to off")


def check_quotas(aws: Aws, cfg: ClusterConfig, r: Result) -> None:
    """The account's vCPU quota per class covers the cluster; unreadable quotas only warn."""
    from botocore.exceptions import BotoCoreError, ClientError

    sq = aws.client("service-quotas")
    for key, need in sorted(vcpus_needed(cfg).items()):
        code, name = VCPU_QUOTA_CODES[key], QUOTA_NAMES[key]
        try:
            try:
                value = sq.get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"]
            except ClientError as exc:
                if error_code(exc) != "NoSuchResourceException":
                    raise
                value = sq.get_aws_default_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"]
        except (ClientError, BotoCoreError) as exc:
            r.warnings.append(f"could not read the quota {name} ({code}): {short_error(exc)}; "
                              f"the cluster needs {need} vCPUs of it")
            continue
        if value < need:
            r.problems.append(
                f"quota: the cluster needs {need} vCPUs of {name} ({code}) but the quota in {aws.region} is "
                f"{value:g}; request an increase in the Service Quotas console, or use fewer or smaller instances")


def check_efs(aws: Aws, cfg: ClusterConfig, r: Result) -> None:
    """An existing EFS has a mount target in the cluster's AZ and VPC; its security group exists there."""
    e = cfg.efs
    if e.mode != "existing":
        return
    if not cfg.network.vpc_id:
        r.problems.append("efs.file_system_id: an existing EFS needs the cluster in its VPC; give --vpc-id "
                          "(and --subnet-id) of the VPC that holds its mount targets")
    fs_api = aws.client("efs")
    found = _call(r, "efs.file_system_id", {"FileSystemNotFound": (
        f"efs.file_system_id: {e.file_system_id} does not exist in {aws.region}; give an EFS of this region")},
        lambda: fs_api.describe_file_systems(FileSystemId=e.file_system_id))
    if found:
        targets = _call(r, "efs.file_system_id", {}, lambda: fs_api.describe_mount_targets(
            FileSystemId=e.file_system_id)) or {"MountTargets": []}
        zones = sorted({t.get("AvailabilityZoneName", "") for t in targets["MountTargets"]
                        if not r.vpc_id or t.get("VpcId") == r.vpc_id})
        if r.availability_zone and r.availability_zone not in zones:
            r.problems.append(f"efs.file_system_id: {e.file_system_id} has no mount target in {r.availability_zone}"
                              f"{' of ' + r.vpc_id if r.vpc_id else ''} (it has: {', '.join(zones) or 'none'}); "
                              "add one there or put the cluster in one of those AZs")
    groups = _call(r, "efs.security_group_id", {"InvalidGroup.NotFound": (
        f"efs.security_group_id: {e.security_group_id} does not exist in {aws.region}; give the mount "
        "targets' security group")}, lambda: aws.client("ec2").describe_security_groups(
            GroupIds=[e.security_group_id]))
    if groups and groups["SecurityGroups"] and r.vpc_id and groups["SecurityGroups"][0]["VpcId"] != r.vpc_id:
        r.problems.append(f"efs.security_group_id: {e.security_group_id} is in "
                          f"{groups['SecurityGroups'][0]['VpcId']}, not {r.vpc_id}; give a group of the cluster's VPC")


def check_image(aws: Aws, cfg: ClusterConfig, r: Result) -> None:
    """The AMI (given, or named by the SSM parameter) exists in the region."""
    image = cfg.ami
    if not image:
        found = _call(r, "ami_ssm_parameter", {"ParameterNotFound": (
            f"ami_ssm_parameter: {cfg.ami_ssm_parameter} does not exist in {aws.region}; give --ami "
            "or another --ami-ssm-parameter")},
            lambda: aws.client("ssm").get_parameter(Name=cfg.ami_ssm_parameter))
        if not found:
            return
        image = str(found["Parameter"]["Value"])
    field_name = "ami" if cfg.ami else "ami_ssm_parameter"
    images = _call(r, field_name, {"InvalidAMIID": (
        f"{field_name}: image {image} does not exist in {aws.region}; give an AMI of this region")},
        lambda: aws.client("ec2").describe_images(ImageIds=[image]))
    if images is not None and not images["Images"]:
        r.problems.append(f"{field_name}: image {image} does not exist in {aws.region}; give an AMI of this region")
    elif images is not None:
        r.warnings += image_warnings(image, images["Images"][0], cfg)
        r.problems += image_problems(image, images["Images"][0], cfg, r.types)
    r.image_id = image


def image_warnings(image: str, description: dict[str, Any], cfg: ClusterConfig) -> list[str]:
    """What the image's tags (written by `ami build`) say it cannot do for this cluster, short of refusing."""
    from cfn_chainermn.ami.render import PROFILE_TAG

    tags = {t.get("Key", ""): t.get("Value", "") for t in description.get("Tags", [])}
    if PROFILE_TAG not in tags:
        return [f"image {image} was not built by `cfn-chainermn ami build`: it has no Chainer stack, so the "
                "cluster comes up but `job submit` of a Chainer script fails; build one and give --ami"]
    return []


def image_problems(image: str, description: dict[str, Any], cfg: ClusterConfig,
                   types: dict[str, InstanceType] | None = None) -> list[str]:
    """Why the image cannot drive the cluster's GPUs, one line per type: its CUDA is older than the GPU
    (the tag `ami build` writes), or the GPU needs a driver the image lacks (V100 on an image that is
    not ours: the Deep Learning Base AMIs ship NVIDIA's open kernel modules, see catalog/gpus.py)."""
    from cfn_chainermn.ami.render import PROFILE_TAG, TAG_PREFIX
    from cfn_chainermn.catalog.gpus import GPUS, cuda_version, driver_gap
    from cfn_chainermn.catalog.instance_types import families_for_cuda

    tags = {t.get("Key", ""): t.get("Value", "") for t in description.get("Tags", [])}
    rows = types if types is not None else {t: INSTANCE_TYPES[t] for t in cfg.instance_types if t in INSTANCE_TYPES}
    field_name = "ami" if cfg.ami else "ami_ssm_parameter"
    cuda = tags.get(TAG_PREFIX + "cuda", "")
    have = cuda_version(cuda)
    problems = []
    for name in cfg.instance_types:
        row = rows.get(name)
        gpu = GPUS.get(row.gpu_model) if row else None
        if row is None or gpu is None:
            continue
        if have is not None and have < gpu.min_cuda:
            suits = ", ".join(families_for_cuda(cuda)) or "none of the supported types"
            problems.append(
                f"{field_name}: image {image} ({tags.get(PROFILE_TAG, '?')} profile) has CUDA {cuda}, but the "
                f"{row.gpu_model} GPUs ({gpu.sm}) of {name} need CUDA {gpu.min_cuda[0]}.{gpu.min_cuda[1]} or newer; "
                f"give --ami of an image with a newer CUDA, or choose a type it suits ({suits})")
        gap = driver_gap(row.gpu_model)
        if gap and PROFILE_TAG not in tags:
            problems.append(f"{field_name}: image {image} cannot drive {name}: {gap}; build an image with that "
                            "driver (`cfn-chainermn ami build --profile current`, driver 535) and give --ami")
    return problems


def run(aws: Aws, cfg: ClusterConfig) -> Result:
    """All checks; PreflightError lists every problem, one per line."""
    r = Result()
    check_key_pair(aws, cfg, r)
    check_network(aws, cfg, r)
    check_offerings(aws, cfg, r)
    check_instance_types(aws, cfg, r)
    check_quotas(aws, cfg, r)
    check_efs(aws, cfg, r)
    check_image(aws, cfg, r)
    if r.problems:
        raise PreflightError("\n".join(r.problems))
    return r
