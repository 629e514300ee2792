"""Validation rules for ClusterConfig: one line per problem, naming the field and the fix.

Kept apart from the data model so the rules read as a list; `config.build` runs them all
before anything else happens, so bad input never reaches AWS.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING

from cfn_chainermn.catalog.instance_types import INSTANCE_TYPES

if TYPE_CHECKING:
    from cfn_chainermn.config.model import ClusterConfig, EfsConfig, NetworkConfig

DEFAULT_AMI_SSM_PARAMETER = (
    "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
)
MAX_WORKERS = 256
MAX_ROOT_VOLUME_GIB = 16384
EFS_MODES = ("none", "new", "existing")
EFS_PERFORMANCE_MODES = ("generalPurpose", "maxIO")
EFS_THROUGHPUT_MODES = ("elastic", "bursting")
TENANCIES = ("default", "dedicated")

STACK_NAME_RE = re.compile(r"^[A-Za-z][-A-Za-z0-9]{0,127}$")
KEY_NAME_RE = re.compile(r"^[\x20-\x7e]{1,255}$")
# An AWS resource id: PREFIX- and 8 or 17 hex digits, as AWS issues them (the template's patterns too).
AWS_ID_DIGITS = "([0-9a-f]{8}|[0-9a-f]{17})"


def aws_id_re(prefix: str) -> re.Pattern[str]:
    return re.compile(rf"^{prefix}-{AWS_ID_DIGITS}$")


AMI_RE, VPC_RE, SUBNET_RE = aws_id_re("ami"), aws_id_re("vpc"), aws_id_re("subnet")
RTB_RE, SG_RE, EFS_RE = aws_id_re("rtb"), aws_id_re("sg"), aws_id_re("fs")
REGION_RE = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
AZ_RE = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d[a-z]$")
TAG_KEY_RE = re.compile(r"^[\w .:/=+\-@]{1,128}$")
SSM_PARAM_RE = re.compile(r"^/[\w.\-/]{1,1000}$")
# SSH from a range wider than a /8 (16.7 million addresses) needs allow_ssh_from_anywhere.
MIN_SSH_PREFIX = 8

# The mount point is a folder of its own. Refused: "/", the system's top-level folders, and
# anything below those whose contents the OS makes and owns (SYSTEM_TREES). A folder inside the
# others (SYSTEM_FOLDERS: /mnt/efs, /home/shared, /opt/data) is fine. Parts are letters, digits,
# ".", "_" and "-", never "." or "..", joined by single slashes. mount_point_problem() says why a
# path breaks the rule and mount_point_pattern() is the same rule as the template's AllowedPattern.
SYSTEM_TREES = ("bin", "boot", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "run", "sbin", "snap",
                "sys", "tmp", "usr", "var/run", "var/lock")  # /var/run and /var/lock are /run's
# The cluster user's home: EFS mounted there would hide the ~/.ssh the agent wrote before.
CLUSTER_HOME = "home/chainer"
SYSTEM_FOLDERS = ("home", "media", "mnt", "opt", "root", "srv", "var")
MOUNT_POINT_MAX = 101
_MOUNT_PART = "[A-Za-z0-9._-]+"
_MOUNT_FIX = "give a folder of its own such as /efs or /mnt/efs"


def _network(value: str) -> ipaddress.IPv4Network | None:
    try:
        return ipaddress.IPv4Network(value, strict=True)
    except ValueError:
        return None


def _check_cidr(path: str, value: str, problems: list[str], *, min_prefix: int, max_prefix: int) -> None:
    net = _network(value)
    if net is None:
        problems.append(
            f"{path}: {value!r} is not an IPv4 network in CIDR form with its host bits zero "
            "(for example 10.0.0.0/16)"
        )
    elif str(net) != value:  # e.g. /032: Python reads it, the template's pattern (and AWS) do not
        problems.append(f"{path}: write {value!r} as {net}")
    elif not min_prefix <= net.prefixlen <= max_prefix:
        problems.append(f"{path}: prefix /{net.prefixlen} is outside /{min_prefix}../{max_prefix}; AWS refuses it")


def _check_id(path: str, value: str, rx: re.Pattern[str], example: str, problems: list[str]) -> None:
    if value and not rx.match(value):
        problems.append(f"{path}: {value!r} is not a valid id; expected the form {example}")


def validate(cfg: ClusterConfig, *, for_stack: bool = False) -> list[str]:
    """Every problem with `cfg`, one line each: the field, what is wrong, and the fix."""
    p: list[str] = []
    if not STACK_NAME_RE.match(cfg.name):
        p.append(
            f"name: {cfg.name!r} is not a CloudFormation stack name; use 1-128 letters, digits "
            "and hyphens, starting with a letter"
        )
    if cfg.region and not REGION_RE.match(cfg.region):
        p.append(f"region: {cfg.region!r} is not an AWS region name (for example us-east-1)")
    for path, itype in (("instance_type", cfg.instance_type), ("worker_instance_type", cfg.worker_instance_type)):
        if itype and itype not in INSTANCE_TYPES:
            p.append(
                f"{path}: unknown instance type {itype!r}; choose one of {', '.join(INSTANCE_TYPES)}"
            )
    if not 0 <= cfg.workers <= MAX_WORKERS:
        p.append(f"workers: {cfg.workers} is out of range; give 0 to {MAX_WORKERS} (0 = master only)")
    if cfg.key_name and not KEY_NAME_RE.match(cfg.key_name):
        p.append("key_name: must be 1-255 printable ASCII characters, the name of an EC2 key pair")
    elif for_stack and not cfg.key_name:
        p.append("key_name: required; give --key-name with the name of an EC2 key pair in the region")
    if cfg.ssh_cidr:
        _check_cidr("ssh_cidr", cfg.ssh_cidr, p, min_prefix=0, max_prefix=32)
        net = _network(cfg.ssh_cidr)
        if net is not None and net.prefixlen < MIN_SSH_PREFIX and not cfg.allow_ssh_from_anywhere:
            reach = "the whole internet" if net.prefixlen == 0 else "a large part of the internet"
            p.append(
                f"ssh_cidr: {net} opens SSH to {reach}; give your own address range (for example "
                "203.0.113.7/32) or set allow_ssh_from_anywhere: true (--allow-ssh-from-anywhere)"
            )
    elif for_stack:
        p.append("ssh_cidr: required; give --ssh-cidr with the address you connect from (for example 203.0.113.7/32)")
    _validate_network(cfg.network, p)
    _validate_efs(cfg.efs, p)
    _check_id("ami", cfg.ami, AMI_RE, "ami-0123456789abcdef0", p)
    if not cfg.ami and not SSM_PARAM_RE.match(cfg.ami_ssm_parameter):
        p.append("ami_ssm_parameter: must be an SSM parameter path starting with /, or give ami")
    if not 8 <= cfg.root_volume_size <= MAX_ROOT_VOLUME_GIB:
        p.append(f"root_volume_size: {cfg.root_volume_size} GiB is out of range; give 8 to {MAX_ROOT_VOLUME_GIB}")
    if cfg.tenancy not in TENANCIES:
        p.append(f"tenancy: {cfg.tenancy!r} is not allowed; choose one of {', '.join(TENANCIES)}")
    for key, value in cfg.tags.items():
        if not TAG_KEY_RE.match(key) or key.lower().startswith("aws:"):
            p.append(f"tags: key {key!r} is invalid; use 1-128 characters, not starting with aws:")
        if len(value) > 256:
            p.append(f"tags.{key}: value is longer than 256 characters; shorten it")
    if len(cfg.tags) > 40:
        p.append("tags: more than 40 tags; CloudFormation stacks take at most 50 and the tool adds its own")
    if not cfg.agent_package.strip() or any(c in cfg.agent_package for c in "'\"`$\\;\n"):
        p.append("agent_package: give a pip requirement such as cfn-chainermn==0.1.0 (no quotes or shell characters)")
    if cfg.agent_index_url and not re.match(r"^https://[^\s'\"`$\\;]+$", cfg.agent_index_url):
        p.append("agent_index_url: give an https:// package index URL, or leave it empty for PyPI")
    return p


def _validate_network(n: NetworkConfig, p: list[str]) -> None:
    _check_id("network.vpc_id", n.vpc_id, VPC_RE, "vpc-0123456789abcdef0", p)
    _check_id("network.subnet_id", n.subnet_id, SUBNET_RE, "subnet-0123456789abcdef0", p)
    _check_id("network.route_table_id", n.route_table_id, RTB_RE, "rtb-0123456789abcdef0", p)
    if n.availability_zone and not AZ_RE.match(n.availability_zone):
        p.append(f"network.availability_zone: {n.availability_zone!r} is not an AZ name (for example us-east-1a)")
    if n.subnet_id and not n.vpc_id:
        p.append("network.vpc_id: required with an existing subnet; give --vpc-id of the subnet's VPC")
    if n.vpc_id and not n.subnet_id and not n.route_table_id:
        p.append(
            "network.route_table_id: required when a new subnet goes into an existing VPC; "
            "give the id of a route table with a route to an internet gateway"
        )
    if n.subnet_id:
        return
    _check_cidr("network.subnet_cidr", n.subnet_cidr, p, min_prefix=16, max_prefix=28)
    if not n.vpc_id:
        _check_cidr("network.vpc_cidr", n.vpc_cidr, p, min_prefix=16, max_prefix=28)
        vpc, subnet = _network(n.vpc_cidr), _network(n.subnet_cidr)
        if vpc is not None and subnet is not None and not subnet.subnet_of(vpc):
            p.append(
                f"network.subnet_cidr: {n.subnet_cidr} is outside network.vpc_cidr {n.vpc_cidr}; "
                "pick a subnet inside the VPC's range"
            )


def _validate_efs(e: EfsConfig, p: list[str]) -> None:
    if e.mode not in EFS_MODES:
        p.append(f"efs.mode: {e.mode!r} is not allowed; choose none, new, or existing (or --efs fs-ID)")
        return
    if e.mode == "existing":
        if not e.file_system_id:
            p.append("efs.file_system_id: required with efs.mode existing; give --efs fs-ID")
        if not e.security_group_id:
            p.append(
                "efs.security_group_id: required with an existing EFS; give --efs-security-group "
                "with the security group of its mount targets"
            )
    _check_id("efs.file_system_id", e.file_system_id, EFS_RE, "fs-0123456789abcdef0", p)
    _check_id("efs.security_group_id", e.security_group_id, SG_RE, "sg-0123456789abcdef0", p)
    if e.performance_mode not in EFS_PERFORMANCE_MODES:
        p.append(f"efs.performance_mode: choose one of {', '.join(EFS_PERFORMANCE_MODES)}")
    if e.throughput_mode not in EFS_THROUGHPUT_MODES:
        p.append(f"efs.throughput_mode: choose one of {', '.join(EFS_THROUGHPUT_MODES)}")
    if e.performance_mode == "maxIO" and e.throughput_mode == "elastic":
        p.append("efs.throughput_mode: elastic does not work with maxIO; use bursting or generalPurpose")
    problem = mount_point_problem(e.mount_point)
    if problem:
        p.append(f"efs.mount_point: {problem}")


def mount_point_problem(path: str) -> str | None:
    """Why `path` cannot be the shared file system's mount point (None when it can); see SYSTEM_TREES."""
    if (len(path) > MOUNT_POINT_MAX or not path.startswith("/")
            or not re.fullmatch(r"(/[A-Za-z0-9._-]*)+", path)):
        return (f"{path!r} is not usable; give an absolute path of at most {MOUNT_POINT_MAX} characters, "
                "made of letters, digits, '.', '_' and '-', such as /efs or /mnt/efs")
    parts = path.split("/")[1:]
    top = parts[0]
    if path == "/" or (len(parts) == 1 and top in SYSTEM_FOLDERS + SYSTEM_TREES):
        return f"{path} is a system folder; {_MOUNT_FIX}"
    if any(part in ("", ".", "..") for part in parts):
        return f"{path!r} has an empty, '.' or '..' part; write the folder plainly, such as /efs or /mnt/efs"
    inside = [t for t in SYSTEM_TREES if path == f"/{t}" or path.startswith(f"/{t}/")]
    if inside:
        return (f"{path} is inside the system folder /{inside[0]}; {_MOUNT_FIX} (or one inside "
                f"{', '.join('/' + f for f in SYSTEM_FOLDERS)})")
    if path == f"/{CLUSTER_HOME}" or path.startswith(f"/{CLUSTER_HOME}/"):
        return f"{path} is in the cluster user's home, whose ~/.ssh the mount would hide; {_MOUNT_FIX}"
    return None


def mount_point_pattern() -> str:
    """mount_point_problem's rule as one regular expression (Java and Python agree on it), for the template."""
    trees, folders = "|".join((*SYSTEM_TREES, CLUSTER_HOME)), "|".join(SYSTEM_FOLDERS)
    part = rf"(?!\.\.?(?:/|$)){_MOUNT_PART}"  # not "." or ".."
    return rf"^(?!/(?:{trees})(?:/|$))(?!/(?:{folders})$)(?:/{part})+$"
