"""Parameters, conditions, rules and console metadata of the cluster template.

Every choice the cluster offers is a parameter, so one template serves the console and the
CLI; `--config` only changes the Defaults. Patterns and ranges mirror config.validate so the
console rejects what the CLI would reject, and Rules carry the constraints between
parameters that a single parameter cannot express.
"""

from __future__ import annotations

from typing import Any

from troposphere import And, Condition, Equals, Not, Parameter, Ref, Template

from cfn_chainermn.catalog.instance_types import INSTANCE_TYPES
from cfn_chainermn.config.model import (
    EFS_PERFORMANCE_MODES,
    EFS_THROUGHPUT_MODES,
    MAX_ROOT_VOLUME_GIB,
    MAX_WORKERS,
    TENANCIES,
    ClusterConfig,
)
from cfn_chainermn.config.params import template_parameters
from cfn_chainermn.config.validation import AWS_ID_DIGITS, MOUNT_POINT_MAX, mount_point_pattern

_NO_SHELL = r"""[^'"`$\\;\s]"""  # values land inside single-quoted shell words in UserData
_OCTET = r"(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"


def _cidr(prefix: str) -> str:
    """An IPv4 CIDR: four octets of 0-255 and a prefix matching `prefix` (host bits are AWS's to check)."""
    return rf"^({_OCTET}\.){{3}}{_OCTET}/({prefix})$"


_SSH_CIDR = _cidr(r"3[0-2]|[12]?\d")  # /0 to /32
_NET_CIDR = _cidr(r"1[6-9]|2[0-8]")  # /16 to /28: what a VPC or subnet may have


def _optional_id(prefix: str) -> dict[str, str]:
    """Empty (= create or skip it) or an AWS id: PREFIX- and 8 or 17 hex digits, as AWS issues them."""
    return {"AllowedPattern": rf"^({prefix}-{AWS_ID_DIGITS})?$",
            "ConstraintDescription": f"empty or {prefix}-0123456789abcdef0"}


# name -> (label, description, extra Parameter properties); order = console order in a group.
_SPECS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "KeyName": ("EC2 key pair", "Key pair you log in with (ssh -i KEY.pem chainer@master).",
                {"Type": "AWS::EC2::KeyPair::KeyName"}),
    "SshCidr": ("SSH from (CIDR)", "Who may SSH to the master, e.g. 203.0.113.7/32. 0.0.0.0/0 (everyone) also "
                "needs AllowSshFromAnywhere.",
                {"AllowedPattern": _SSH_CIDR, "ConstraintDescription": "an IPv4 CIDR such as 203.0.113.7/32 "
                 "(octets 0-255, prefix /0 to /32)"}),
    "AllowSshFromAnywhere": ("Allow SSH from anywhere", "true lets SshCidr be 0.0.0.0/0, open to the whole "
                             "internet; leave false and give your own range.",
                             {"AllowedValues": ["false", "true"]}),
    "MasterInstanceType": ("Master instance type", "GPU instance type of the master node.",
                           {"AllowedValues": list(INSTANCE_TYPES)}),
    "WorkerInstanceType": ("Worker instance type", "GPU instance type of every worker node.",
                           {"AllowedValues": list(INSTANCE_TYPES)}),
    "WorkerCount": ("Workers", "Number of workers besides the master (0 = master only). Update it to scale.",
                    {"Type": "Number", "MinValue": 0, "MaxValue": MAX_WORKERS}),
    "SpotWorkers": ("Spot workers", "Run workers on Spot capacity (the master stays On-Demand).",
                    {"AllowedValues": ["false", "true"]}),
    "ImageId": ("AMI id", "AMI for every node, e.g. from `cfn-chainermn ami build`; empty = the SSM parameter below.",
                _optional_id("ami")),
    "ImageSsmParameter": ("AMI SSM parameter", "SSM parameter naming the AMI when AMI id is empty.",
                          {"Type": "AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"}),
    "RootVolumeSize": ("Root volume (GiB)", "Encrypted gp3 root volume of each node.",
                       {"Type": "Number", "MinValue": 8, "MaxValue": MAX_ROOT_VOLUME_GIB}),
    "Tenancy": ("Tenancy", "Instance tenancy of every node.", {"AllowedValues": list(TENANCIES)}),
    "VpcId": ("Existing VPC", "Empty = a new VPC with an internet gateway.",
              _optional_id("vpc")),
    "SubnetId": ("Existing subnet", "Empty = a new subnet. An existing one needs its VPC above.",
                 _optional_id("subnet")),
    "RouteTableId": ("Route table for a new subnet", "Needed only for a new subnet in an existing VPC: "
                     "a route table with a route to an internet gateway.",
                     _optional_id("rtb")),
    "VpcCidr": ("New VPC CIDR", "Address range of a new VPC (/16 to /28).",
                {"AllowedPattern": _NET_CIDR, "ConstraintDescription": "an IPv4 CIDR from /16 to /28 such as "
                 "10.0.0.0/16"}),
    "SubnetCidr": ("New subnet CIDR", "Address range of a new subnet, inside the VPC's (/16 to /28).",
                   {"AllowedPattern": _NET_CIDR, "ConstraintDescription": "an IPv4 CIDR from /16 to /28 "
                    "such as 10.0.0.0/24"}),
    "AvailabilityZone": ("New subnet AZ", "Availability zone of a new subnet; empty = the region's first.",
                         {"AllowedPattern": r"^([a-z]{2}(-gov)?-[a-z]+-\d[a-z])?$",
                          "ConstraintDescription": "empty or an AZ name such as us-east-1a"}),
    "EfsMode": ("Shared EFS", "none, a new encrypted EFS, or an existing one.",
                {"AllowedValues": ["none", "new", "existing"]}),
    "EfsFileSystemId": ("Existing EFS id", "With EFS existing: its id (it needs a mount target in the subnet's AZ).",
                        _optional_id("fs")),
    "EfsSecurityGroupId": ("Existing EFS security group", "With EFS existing: the security group of its mount "
                           "targets; NFS from the cluster is added to it.",
                           _optional_id("sg")),
    "EfsPerformanceMode": ("New EFS performance mode", "generalPurpose suits nearly everyone.",
                           {"AllowedValues": list(EFS_PERFORMANCE_MODES)}),
    "EfsThroughputMode": ("New EFS throughput mode", "elastic (pay per use) or bursting; maxIO needs bursting.",
                          {"AllowedValues": list(EFS_THROUGHPUT_MODES)}),
    "MountPoint": ("Mount point", "Where every node mounts the shared file system: a folder of its own, not a "
                   "system folder such as /opt, /usr or /etc.",
                   {"AllowedPattern": mount_point_pattern(), "MaxLength": MOUNT_POINT_MAX,
                    "ConstraintDescription": "a folder of its own such as /efs or /mnt/efs: not / or a top-level "
                    "system folder (/opt, /home, /mnt, /var, ...), nothing inside /bin, /boot, /dev, /etc, /lib*, "
                    "/proc, /run (and /var/run, /var/lock), /sbin, /snap, /sys, /tmp or /usr, not the cluster "
                    "user's home /home/chainer, and no '.', '..' or empty parts"}),
    "AgentPackage": ("Agent package", "pip requirement of the node agent, installed when the AMI lacks it.",
                     {"AllowedPattern": r"""^[^'"`$\\;\n]*[^'"`$\\;\s][^'"`$\\;\n]*$""",
                      "ConstraintDescription": "a pip requirement such as cfn-chainermn==0.1.0"}),
    "AgentIndexUrl": ("Agent package index", "https package index for the agent; empty = PyPI.",
                      {"AllowedPattern": rf"^(https://{_NO_SHELL}+)?$",
                       "ConstraintDescription": "empty or an https:// URL"}),
    "AgentWheelS3Path": ("Agent wheel in S3", "bucket/key of an agent wheel to install instead (set by "
                         "`cfn-chainermn stack create`); empty = use the package.",
                         {"AllowedPattern": rf"^([a-z0-9][a-z0-9.-]{{1,61}}[a-z0-9]/{_NO_SHELL}+\.whl)?$",
                          "ConstraintDescription": "empty or bucket/path/to/agent.whl"}),
}

_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Access", ("KeyName", "SshCidr", "AllowSshFromAnywhere")),
    ("Cluster (1 master + N workers)", ("MasterInstanceType", "WorkerInstanceType", "WorkerCount", "SpotWorkers")),
    ("Machine image and disks", ("ImageId", "ImageSsmParameter", "RootVolumeSize", "Tenancy")),
    ("Network (empty ids = create new)", ("VpcId", "SubnetId", "RouteTableId", "VpcCidr", "SubnetCidr",
                                           "AvailabilityZone")),
    ("Shared file system (EFS)", ("EfsMode", "EfsFileSystemId", "EfsSecurityGroupId", "EfsPerformanceMode",
                                  "EfsThroughputMode", "MountPoint")),
    ("Node agent", ("AgentPackage", "AgentIndexUrl", "AgentWheelS3Path")),
)

# Parameters the console must ask for when the config leaves them empty.
_REQUIRED = ("KeyName", "SshCidr")


def _empty(name: str) -> Equals:
    return Equals(Ref(name), "")


def add_parameters(t: Template, cfg: ClusterConfig) -> None:
    """Add every parameter with `cfg`'s values as Defaults, plus the console's Interface."""
    values = template_parameters(cfg)
    if set(values) != set(_SPECS):
        raise RuntimeError(f"params.template_parameters and the template disagree: {set(values) ^ set(_SPECS)}")
    for name, (_label, description, extra) in _SPECS.items():
        props: dict[str, Any] = {"Type": "String", "Description": description, **extra}
        if values[name] or name not in _REQUIRED:
            props["Default"] = values[name]
        t.add_parameter(Parameter(name, **props))
    t.set_metadata({"AWS::CloudFormation::Interface": {
        "ParameterGroups": [{"Label": {"default": label}, "Parameters": list(names)} for label, names in _GROUPS],
        "ParameterLabels": {name: {"default": spec[0]} for name, spec in _SPECS.items()},
    }})


def add_conditions(t: Template) -> None:
    """Conditions keyed on the parameter they test, so cfn-lint knows a Ref is non-empty in the
    branch that uses it (else it warns that "" does not match vpc-...)."""
    conditions = {
        "HasImageId": Not(_empty("ImageId")),
        "CreateVpc": _empty("VpcId"),
        "CreateSubnet": _empty("SubnetId"),
        "HasAvailabilityZone": Not(_empty("AvailabilityZone")),
        "NewVpcAndSubnet": And(Condition("CreateVpc"), Condition("CreateSubnet")),
        "NewSubnetInExistingVpc": And(Condition("CreateSubnet"), Not(_empty("VpcId")), Not(_empty("RouteTableId"))),
        "CreateEfs": Equals(Ref("EfsMode"), "new"),
        "HasEfs": Not(Equals(Ref("EfsMode"), "none")),
        "ExistingEfsIngress": And(Equals(Ref("EfsMode"), "existing"), Not(_empty("EfsSecurityGroupId"))),
        "SpotWorkersOn": Equals(Ref("SpotWorkers"), "true"),
        "HasAgentWheel": Not(_empty("AgentWheelS3Path")),
    }
    for name, cond in conditions.items():
        t.add_condition(name, cond)


def _rule(condition: Any, assertion: Any, message: str) -> dict[str, Any]:
    return {"RuleCondition": condition, "Assertions": [{"Assert": assertion, "AssertDescription": message}]}


def add_rules(t: Template) -> None:
    """Constraints between parameters, checked by CloudFormation before anything is created."""
    # Rules compare only for equality, so this catches 0.0.0.0/0 itself; other wide ranges need
    # the CLI (config validation refuses any prefix under /8 without allow_ssh_from_anywhere).
    t.add_rule("SshFromAnywhereNeedsOptIn", _rule(
        Equals(Ref("SshCidr"), "0.0.0.0/0"), Equals(Ref("AllowSshFromAnywhere"), "true"),
        "SshCidr 0.0.0.0/0 opens SSH to the whole internet: give your own address range (e.g. 203.0.113.7/32), "
        "or set AllowSshFromAnywhere to true if you really mean everyone."))
    t.add_rule("ExistingSubnetNeedsVpc", _rule(
        Not(_empty("SubnetId")), Not(_empty("VpcId")),
        "An existing subnet needs VpcId: give the id of the subnet's VPC."))
    t.add_rule("NewSubnetInExistingVpcNeedsRouteTable", _rule(
        And(_empty("SubnetId"), Not(_empty("VpcId"))), Not(_empty("RouteTableId")),
        "A new subnet in an existing VPC needs RouteTableId: a route table with a route to an internet gateway."))
    t.add_rule("ExistingEfsNeedsIdAndSecurityGroup", _rule(
        Equals(Ref("EfsMode"), "existing"), And(Not(_empty("EfsFileSystemId")), Not(_empty("EfsSecurityGroupId"))),
        "EfsMode existing needs EfsFileSystemId and EfsSecurityGroupId (the security group of its mount targets)."))
    t.add_rule("MaxIoNeedsBursting", _rule(
        And(Equals(Ref("EfsMode"), "new"), Equals(Ref("EfsPerformanceMode"), "maxIO")),
        Equals(Ref("EfsThroughputMode"), "bursting"),
        "EFS maxIO performance mode works only with bursting throughput: set EfsThroughputMode to bursting."))
